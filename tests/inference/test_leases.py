"""Job leases and the reaper (inference.services.leases) on PostgreSQL, Celery eager: no job stays
assigned or running once its worker goes silent, over-long jobs end, orphaned holds are released."""

import uuid
from datetime import timedelta
from decimal import Decimal

from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.utils import timezone

from billing.models import Hold, LedgerEntry
from billing.selectors import ledger_invariant_violations
from billing.services.holds import hold_take
from inference.models import Job, LlmModel, Worker
from inference.relay import REPLY_ERROR, REPLY_REQUEUED, ReplyReader
from inference.services import job_mark_running
from inference.services.jobs import Relayed
from inference.services.leases import Progress, holds_release_orphaned, jobs_lease_renew, jobs_progress_save
from inference.tasks import reap_leases_task
from tests.inference.platform import job_queued, run, smollm2_count, worker_online
from tests.support.factories import SMOLLM2


def held_job(user, reply_channel: str) -> Job:
    """A queued-then-dispatched job with its billing hold, as the chat view opens it."""
    job = job_queued(user, reply_channel=reply_channel)
    hold_take(
        user=user,
        job_id=str(job.id),
        model=LlmModel.objects.get(id=SMOLLM2),
        prompt_tokens=10,
        max_tokens=16,
        token_type="spark",
    )
    job.refresh_from_db()
    return job


def go_silent(worker: Worker, *, job: Job, seconds: float = 60) -> None:
    """Nothing heard from the worker (heartbeat) nor about the job (lease) for `seconds`."""
    past = timezone.now() - timedelta(seconds=seconds)
    Worker.objects.filter(pk=worker.pk).update(last_heartbeat=past)
    Job.objects.filter(pk=job.pk).update(lease_expires_at=past)


def reap_and_read(reply_channel: str):
    async def scenario():
        reader = ReplyReader(reply_channel)
        assert await reader.next(0.3) is None  # subscribed (pub/sub keeps nothing sent before)
        await sync_to_async(reap_leases_task)()
        message = await reader.next(5)
        await reader.close()
        return message

    return run(scenario)


def new_channel() -> str:
    return run(get_channel_layer().new_channel)


def progress_save(job: Job, channel_name: str, text: str, *, claimed: int) -> int:
    """What a worker connection saves of a job it streams (every JOB_PROGRESS_SECONDS)."""
    progress = Progress(model_id=job.model_id, max_tokens=job.max_tokens, relayed=Relayed(claimed, text))
    return jobs_progress_save(channel_name=channel_name, progress={str(job.id): progress})


def test_assignment_takes_a_lease_and_the_first_token_and_heartbeats_renew_it(platform, operator, customer):
    platform.JOB_LEASE_SECONDS = 30
    worker = worker_online(operator.user, "leased")
    job = job_queued(customer.user, reply_channel=new_channel())
    job.refresh_from_db()
    assert job.status == Job.Status.ASSIGNED
    assert timedelta(seconds=25) < job.lease_expires_at - job.assigned_at <= timedelta(seconds=30)

    Job.objects.filter(pk=job.pk).update(lease_expires_at=timezone.now())
    job_mark_running(job_id=job.id, channel_name=worker.channel_name, first_token_at=timezone.now())
    job.refresh_from_db()
    assert job.lease_expires_at > timezone.now() + timedelta(seconds=25)

    Job.objects.filter(pk=job.pk).update(lease_expires_at=timezone.now())
    # A heartbeat renews only jobs its own connection holds; junk ids are ignored.
    assert jobs_lease_renew(job_ids=[str(job.id), "not-a-uuid"], channel_name="some.other.channel") == 0
    assert jobs_lease_renew(job_ids=[str(job.id), "not-a-uuid"], channel_name=worker.channel_name) == 1
    job.refresh_from_db()
    assert job.lease_expires_at > timezone.now() + timedelta(seconds=25)

    Job.objects.filter(pk=job.pk).update(lease_expires_at=timezone.now())
    # Progress: only the connection holding the job saves it, with the platform's count and a lease.
    assert progress_save(job, "some.other.channel", "seven words of text relayed so far", claimed=7) == 0
    assert progress_save(job, worker.channel_name, "seven words of text relayed so far", claimed=7) == 1
    job.refresh_from_db()
    assert job.completion_tokens == smollm2_count("seven words of text relayed so far")
    assert (job.claimed_completion_tokens, job.output_bytes) == (7, len("seven words of text relayed so far"))
    assert job.lease_expires_at > timezone.now() + timedelta(seconds=25)
    reap_leases_task()
    job.refresh_from_db()
    assert job.status == Job.Status.RUNNING  # a live lease is left alone


def test_a_job_whose_worker_went_silent_before_the_first_token_goes_to_another_worker(platform, operator, customer):
    platform.JOB_LEASE_SECONDS = 5
    silent = worker_online(operator.user, "silent")
    reply = new_channel()
    job = held_job(customer.user, reply)
    assert job.worker_id == silent.pk
    other = worker_online(operator.user, "other")
    go_silent(silent, job=job)

    message = reap_and_read(reply)

    assert message["type"] == REPLY_REQUEUED
    job.refresh_from_db()
    assert (job.status, job.worker_id, job.attempts) == (Job.Status.ASSIGNED, other.pk, 2)
    assert job.lease_expires_at > timezone.now()
    silent.refresh_from_db()
    # Dispatch skips it and its slot is free. No connection of its answered the revoke (as when its
    # server process died), so nothing is held against it: a live connection's lapse counts
    # (tests/inference/test_leases_socket.py).
    assert (silent.status, silent.in_flight, silent.jobs_aborted) == (Worker.Status.OFFLINE, 0, 0)
    assert Hold.objects.get(job_id=str(job.id)).status == Hold.Status.OPEN  # still the same request
    assert ledger_invariant_violations() == []


def test_a_job_that_had_streamed_fails_and_is_charged_only_for_the_tokens_delivered(platform, operator, customer):
    platform.JOB_LEASE_SECONDS = 5
    worker = worker_online(operator.user, "streamer")
    reply = new_channel()
    job = held_job(customer.user, reply)
    job_mark_running(job_id=job.id, channel_name=worker.channel_name, first_token_at=timezone.now())
    progress_save(job, worker.channel_name, "five tokens or so", claimed=5)
    go_silent(worker, job=job)

    message = reap_and_read(reply)

    assert (message["type"], message["code"]) == (REPLY_ERROR, "worker_timeout")
    job.refresh_from_db()
    delivered = smollm2_count("five tokens or so")
    assert (job.status, job.completion_tokens, job.error_code) == (Job.Status.FAILED, delivered, "worker_timeout")
    hold = Hold.objects.get(job_id=str(job.id))
    assert hold.status != Hold.Status.OPEN
    # The delivered tokens at $0.90/1M output at most, never the 16 held for; the worker earns nothing.
    assert hold.charged <= hold.amount * Decimal(delivered) / Decimal(16)
    assert not LedgerEntry.objects.filter(kind=LedgerEntry.Kind.REWARD).exists()
    worker.refresh_from_db()
    assert (worker.status, worker.in_flight, worker.jobs_failed) == (Worker.Status.OFFLINE, 0, 0)
    assert ledger_invariant_violations() == []


def test_a_job_past_the_maximum_duration_fails_even_with_a_fresh_lease(platform, operator, customer):
    platform.JOB_MAX_DURATION_SECONDS = 60
    worker = worker_online(operator.user, "slowpoke")
    reply = new_channel()
    job = held_job(customer.user, reply)
    job_mark_running(job_id=job.id, channel_name=worker.channel_name, first_token_at=timezone.now())
    Job.objects.filter(pk=job.pk).update(assigned_at=timezone.now() - timedelta(seconds=61))

    message = reap_and_read(reply)

    assert (message["type"], message["code"]) == (REPLY_ERROR, "job_timeout")
    job.refresh_from_db()
    assert job.status == Job.Status.FAILED
    worker.refresh_from_db()
    # The worker is heartbeating: it stays online, with its slot back.
    assert (worker.status, worker.in_flight) == (Worker.Status.ONLINE, 0)
    assert Hold.objects.get(job_id=str(job.id)).status == Hold.Status.RELEASED
    assert ledger_invariant_violations() == []


def test_orphaned_holds_are_released_after_the_grace_period_and_live_ones_kept(platform, operator, customer):
    platform.HOLD_ORPHAN_GRACE_SECONDS = 60
    model = LlmModel.objects.get(id=SMOLLM2)
    orphan = hold_take(
        user=customer.user, job_id=str(uuid.uuid4()), model=model, prompt_tokens=10, max_tokens=16, token_type="spark"
    )
    recent = hold_take(
        user=customer.user, job_id=str(uuid.uuid4()), model=model, prompt_tokens=10, max_tokens=16, token_type="spark"
    )
    # A queued job (no worker online) keeps its hold however old.
    queued = held_job(customer.user, new_channel())
    old = timezone.now() - timedelta(seconds=120)
    Hold.objects.filter(job_id__in=[orphan.job_id, str(queued.id)]).update(created_at=old)

    assert holds_release_orphaned() == 1

    statuses = dict(Hold.objects.values_list("job_id", "status"))
    assert statuses[orphan.job_id] == Hold.Status.RELEASED
    assert statuses[recent.job_id] == Hold.Status.OPEN
    assert statuses[str(queued.id)] == Hold.Status.OPEN
    assert ledger_invariant_violations() == []


def test_a_heartbeating_worker_that_never_started_a_job_keeps_its_place_and_the_job_is_requeued(
    platform, operator, customer
):
    platform.JOB_LEASE_SECONDS = 5
    worker = worker_online(operator.user, "lost-message", slots=2)
    reply = new_channel()
    job = held_job(customer.user, reply)
    # The job.assign message never reached it (say Redis restarted), but it keeps heartbeating.
    Job.objects.filter(pk=job.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))

    message = reap_and_read(reply)

    assert message["type"] == REPLY_REQUEUED
    job.refresh_from_db()
    # Re-dispatched, and the online worker with a free slot may take it again.
    assert (job.status, job.attempts) == (Job.Status.ASSIGNED, 2)
    worker.refresh_from_db()
    assert (worker.status, worker.in_flight, worker.jobs_aborted) == (Worker.Status.ONLINE, 1, 0)


def test_lapses_found_after_the_reaper_itself_was_down_are_nobodys_fault(platform, operator, customer):
    """Celery (or beat, Redis, the database) was down longer than a lease: leases could not be renewed
    nor finished jobs completed meanwhile, so the reaper's first run back renews them; the next run reaps
    only what lapses after that."""
    from inference.models import PlatformBeat
    from inference.services.leases import REAPER_BEAT, jobs_reap_leases

    platform.JOB_LEASE_SECONDS = 5
    worker = worker_online(operator.user, "streamer")
    job = held_job(customer.user, new_channel())
    job_mark_running(job_id=job.id, channel_name=worker.channel_name, first_token_at=timezone.now())
    go_silent(worker, job=job)
    PlatformBeat.objects.create(name=REAPER_BEAT, at=timezone.now() - timedelta(seconds=60))

    assert jobs_reap_leases() == {"renewed": 1}

    job.refresh_from_db()
    assert job.status == Job.Status.RUNNING
    assert job.lease_expires_at > timezone.now() + timedelta(seconds=4)
    worker.refresh_from_db()
    assert (worker.status, worker.jobs_failed, worker.jobs_aborted) == (Worker.Status.ONLINE, 0, 0)
    assert Hold.objects.get(job_id=str(job.id)).status == Hold.Status.OPEN
    # Back to normal: a lease that lapses while the reaper runs is reaped.
    assert jobs_reap_leases() == {}
    Job.objects.filter(pk=job.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    assert jobs_reap_leases() == {"failed": 1}
