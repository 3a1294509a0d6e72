"""Worker trust (inference.services.trust): statistics at job end, automatic pause after too many
faults in an hour, implausible throughput flagged, dispatch preferring healthy and fast workers."""

from datetime import timedelta
from unittest import mock

from django.utils import timezone

from inference.models import Job, Worker
from inference.services import job_complete, job_mark_running
from inference.services.trust import worker_fault_record, worker_unpause
from inference.usage.selectors import worker_state
from tests.inference.platform import job_queued, worker_online


def finish(worker: Worker, job: Job, *, tokens: int, ttft: float, seconds: float) -> Job:
    """The worker streamed `tokens` in `seconds` after a first token `ttft` s after assignment."""
    Job.objects.filter(pk=job.pk).update(max_tokens=max(tokens, 16))  # billed at most max_tokens
    job.refresh_from_db()
    first = job.assigned_at + timedelta(seconds=ttft)
    job_mark_running(job_id=job.id, channel_name=worker.channel_name, first_token_at=first)
    # The done arrives `seconds` after the first token (the clock read when the job ends).
    with mock.patch("django.utils.timezone.now", return_value=first + timedelta(seconds=seconds)):
        return job_complete(
            job_id=job.id,
            channel_name=worker.channel_name,
            finish_reason="length",
            prompt_tokens=5,
            completion_tokens=tokens,
            reasoning_tokens=0,
            output=" word" * tokens,  # one SmolLM2 token each
        )


def test_a_completed_job_adds_to_the_workers_statistics(platform, operator, customer):
    worker = worker_online(operator.user, "steady")
    job = job_queued(customer.user, reply_channel="reply.nowhere")
    finish(worker, job, tokens=16, ttft=0.25, seconds=0.5)

    worker.refresh_from_db()
    assert (worker.jobs_completed, worker.jobs_failed, worker.jobs_aborted) == (1, 0, 0)
    assert worker.tokens_generated == 16
    assert 240 <= worker.ttft_ms_total <= 260
    assert 490 <= worker.generation_ms_total <= 510
    assert 240 <= worker.ttft_ms_avg <= 260
    assert 31 <= worker.tokens_per_second <= 33
    assert worker.flagged_reason == ""


def test_implausible_throughput_is_flagged(platform, operator, customer):
    platform.WORKER_MAX_PLAUSIBLE_TPS = 2000
    worker = worker_online(operator.user, "too-fast", slots=2)
    plausible = job_queued(customer.user, reply_channel="reply.a")
    finish(worker, plausible, tokens=64, ttft=0.1, seconds=0.5)  # 128 tokens/s
    worker.refresh_from_db()
    assert worker.flagged_reason == ""

    suspicious = job_queued(customer.user, reply_channel="reply.b")
    finish(worker, suspicious, tokens=64, ttft=0.1, seconds=0.01)  # 6400 tokens/s
    worker.refresh_from_db()
    assert "6400 tokens/s" in worker.flagged_reason


def test_a_worker_failing_too_often_within_an_hour_is_paused_and_gets_no_jobs(platform, operator, customer):
    platform.WORKER_MAX_FAILURES_PER_HOUR = 5
    flaky = worker_online(operator.user, "flaky")
    long_ago = timezone.now() - timedelta(hours=2)
    # Faults an hour apart do not add up.
    for _ in range(5):
        assert not worker_fault_record(worker_id=flaky.pk, kind="failed", now=long_ago)
    for _ in range(5):
        assert not worker_fault_record(worker_id=flaky.pk, kind="aborted")
    assert worker_fault_record(worker_id=flaky.pk, kind="failed")  # the sixth within the hour

    flaky.refresh_from_db()
    assert (flaky.jobs_failed, flaky.jobs_aborted) == (6, 5)
    assert worker_state(flaky) == "paused"  # what its owner's Workers page and the console show
    assert flaky.paused_until > timezone.now() + timedelta(minutes=59)
    job = job_queued(customer.user, reply_channel="reply.nowhere")
    job.refresh_from_db()
    assert (job.status, job.worker_id) == (Job.Status.QUEUED, None)  # its only worker is paused

    worker_unpause(worker=flaky)
    second = job_queued(customer.user, reply_channel="reply.elsewhere")
    second.refresh_from_db()
    assert second.worker_id == flaky.pk


def test_dispatch_prefers_healthy_then_less_loaded_then_faster_workers(platform, operator, customer):
    unhealthy = worker_online(operator.user, "a-unhealthy", slots=4)
    slow = worker_online(operator.user, "b-slow", slots=4)
    fast = worker_online(operator.user, "c-fast", slots=4)
    Worker.objects.filter(pk=unhealthy.pk).update(jobs_completed=5, jobs_failed=5)
    Worker.objects.filter(pk=slow.pk).update(jobs_completed=10, tokens_generated=100, generation_ms_total=10_000)
    Worker.objects.filter(pk=fast.pk).update(jobs_completed=10, tokens_generated=1000, generation_ms_total=10_000)

    jobs = [job_queued(customer.user, reply_channel=f"reply.{n}") for n in range(3)]
    for job in jobs:
        job.refresh_from_db()

    # Fast first; then the slow healthy one, which has fewer jobs in flight; the unhealthy one last.
    assert [job.worker_id for job in jobs] == [fast.pk, slow.pk, fast.pk]
    assert Worker.objects.get(pk=unhealthy.pk).in_flight == 0


def test_an_operator_lifts_a_pause_from_the_admin(platform, operator, customer):
    from django.test import Client

    from accounts.models import User

    User.objects.create_superuser("admin@example.com", "admin-password-123")
    admin = Client()
    assert admin.login(username="admin@example.com", password="admin-password-123")
    paused = worker_online(operator.user, "paused")
    Worker.objects.filter(pk=paused.pk).update(paused_until=timezone.now() + timedelta(hours=1), faults_in_window=6)

    listing = admin.get("/admin/inference/worker/").content.decode()
    assert "paused" in listing
    response = admin.post("/admin/inference/worker/", {"action": "unpause", "_selected_action": [paused.pk]})
    assert response.status_code == 302

    paused.refresh_from_db()
    assert (paused.paused_until, paused.faults_in_window) == (None, 0)
    job = job_queued(customer.user, reply_channel="reply.nowhere")
    job.refresh_from_db()
    assert job.worker_id == paused.pk


def test_an_owner_whose_workers_keep_getting_paused_is_paused_as_a_whole(platform, operator, customer):
    platform.WORKER_MAX_FAILURES_PER_HOUR = 0  # each fault pauses its worker
    platform.OWNER_MAX_PAUSES_PER_DAY = 1
    first, second = worker_online(operator.user, "first"), worker_online(operator.user, "second")
    spare = worker_online(operator.user, "spare")
    assert worker_fault_record(worker_id=first.pk, kind="failed")
    spare.refresh_from_db()
    assert worker_state(spare) == "online"  # one worker's pause is that worker's
    assert worker_fault_record(worker_id=second.pk, kind="failed")  # the owner's second pause in a day

    spare.refresh_from_db()
    assert worker_state(spare) == "paused"
    assert spare.paused_until > timezone.now() + timedelta(hours=23)
    # A new worker name does not escape it.
    renamed = worker_online(operator.user, "new-name")
    assert worker_state(renamed) == "paused"
    job = job_queued(customer.user, reply_channel="reply.nowhere")
    job.refresh_from_db()
    assert (job.status, job.worker_id) == (Job.Status.QUEUED, None)

    worker_unpause(worker=renamed)  # an operator vouches for the owner
    later = job_queued(customer.user, reply_channel="reply.later")
    later.refresh_from_db()
    assert later.worker_id in {spare.pk, renamed.pk}
