"""What dies with a server process (no disconnect handler runs) is released by the periodic sweep."""

from datetime import timedelta

from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.utils import timezone

from inference.models import Job, Worker
from inference.relay import REPLY_ERROR, REPLY_REQUEUED, ReplyReader
from inference.services import (
    job_complete,
    job_mark_running,
    job_requeue,
    jobs_expire_abandoned,
    worker_disconnect,
)
from inference.services.jobs import Relayed
from inference.tasks import reap_stale_task
from tests.inference.platform import job_queued, run, worker_online


def test_a_silent_worker_is_reaped_and_its_jobs_released(platform, operator, customer):
    async def scenario():
        layer = get_channel_layer()
        waiting, streaming = await layer.new_channel(), await layer.new_channel()
        dead = await sync_to_async(worker_online)(operator.user, "dead", slots=2)
        silent_job = await sync_to_async(job_queued)(customer.user, reply_channel=waiting)
        running_job = await sync_to_async(job_queued)(customer.user, reply_channel=streaming)
        await sync_to_async(job_mark_running)(
            job_id=running_job.id, channel_name=dead.channel_name, first_token_at=timezone.now()
        )
        # Its server died long ago: no heartbeat since.
        await sync_to_async(
            lambda: Worker.objects.filter(pk=dead.pk).update(last_heartbeat=timezone.now() - timedelta(minutes=5))
        )()
        await sync_to_async(worker_online)(operator.user, "alive", slots=1)
        await sync_to_async(reap_stale_task)()
        readers = ReplyReader(waiting), ReplyReader(streaming)
        messages = [await readers[0].next(5), await readers[1].next(5)]
        for reader in readers:
            await reader.close()
        return dead, silent_job, running_job, messages

    dead, silent_job, running_job, (requeued, failed) = run(scenario)
    assert requeued["type"] == REPLY_REQUEUED
    assert (failed["type"], failed["code"]) == (REPLY_ERROR, "worker_disconnected")
    dead.refresh_from_db()
    assert (dead.status, dead.in_flight) == (Worker.Status.OFFLINE, 0)
    silent_job.refresh_from_db()
    running_job.refresh_from_db()
    assert (silent_job.status, silent_job.worker.name) == (Job.Status.ASSIGNED, "alive")
    assert running_job.status == Job.Status.FAILED


def test_a_fresh_worker_is_left_alone(platform, operator, customer):
    worker = worker_online(operator.user, "fresh")
    reap_stale_task()
    worker.refresh_from_db()
    assert worker.status == Worker.Status.ONLINE


def test_an_abandoned_queued_job_is_expired(platform, customer):
    async def scenario():
        reply = await get_channel_layer().new_channel()
        job = await sync_to_async(job_queued)(customer.user, reply_channel=reply)
        await sync_to_async(
            lambda: Job.objects.filter(pk=job.pk).update(queued_at=timezone.now() - timedelta(hours=1))
        )()
        await sync_to_async(reap_stale_task)()
        reader = ReplyReader(reply)
        message = await reader.next(5)
        await reader.close()
        return job, message

    job, message = run(scenario)
    assert (message["type"], message["code"]) == (REPLY_ERROR, "no_worker_available")
    job.refresh_from_db()
    assert (job.status, job.error_code) == (Job.Status.FAILED, "no_worker_available")


def test_a_disconnect_leaves_a_job_whose_done_celery_is_completing_to_be_completed(platform, operator, customer):
    """The socket hands a `done` to Celery and the worker hangs up: the disconnect must not fail the
    job the worker finished, only the one it left unfinished."""
    worker = worker_online(operator.user, "w", slots=2)
    finished, unfinished = job_queued(customer.user), job_queued(customer.user)
    for job in (finished, unfinished):
        job_mark_running(job_id=job.id, channel_name=worker.channel_name, first_token_at=timezone.now())

    worker_disconnect(
        worker_id=worker.pk, channel_name=worker.channel_name, delivered={str(unfinished.id): Relayed(3, " a b c")},
        finishing=[str(finished.id)],
    )  # fmt: skip
    finished.refresh_from_db()
    unfinished.refresh_from_db()
    assert (finished.status, unfinished.status) == (Job.Status.RUNNING, Job.Status.FAILED)

    done = dict(finish_reason="stop", prompt_tokens=3, completion_tokens=2, reasoning_tokens=0, first_token_at=None,
                output=" word word")  # fmt: skip
    assert job_complete(job_id=finished.id, channel_name=worker.channel_name, **done) is not None
    finished.refresh_from_db()
    assert (finished.status, finished.completion_tokens) == (Job.Status.COMPLETED, 2)
    assert Worker.objects.get(pk=worker.pk).in_flight == 0


def test_a_job_requeued_just_now_is_not_taken_for_abandoned_however_old_it_is(platform, operator, customer):
    """The sweep expires jobs queued for twice the queue timeout; a job that ran long on a worker and
    was requeued has a waiting request that restarted its own timeout."""
    worker = worker_online(operator.user, "w", slots=1)
    job = job_queued(customer.user)
    Job.objects.filter(pk=job.pk).update(created_at=timezone.now() - timedelta(hours=1))
    Worker.objects.filter(pk=worker.pk).update(status=Worker.Status.DRAINING)  # nobody takes it again
    assert job_requeue(job_id=job.id, channel_name=worker.channel_name, reason="worker error") is not None
    jobs_expire_abandoned()
    job.refresh_from_db()
    assert job.status == Job.Status.QUEUED

    Job.objects.filter(pk=job.pk).update(queued_at=timezone.now() - timedelta(hours=1))
    jobs_expire_abandoned()
    job.refresh_from_db()
    assert (job.status, job.error_code) == (Job.Status.FAILED, "no_worker_available")
