"""What dies with a server process (no disconnect handler runs) is released by the periodic sweep."""

import uuid
from datetime import timedelta

from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.utils import timezone

from inference.models import Job, LlmModel, Worker
from inference.openai.responses import completion_id
from inference.relay import REPLY_ERROR, REPLY_REQUEUED, ReplyReader
from inference.services import job_create, job_mark_running, worker_register
from inference.tasks import reap_stale_task
from tests.inference.platform import SMOLLM2, run


def register(owner, name: str, *, slots: int = 1) -> Worker:
    return worker_register(
        owner=owner,
        name=name,
        model_ids=[SMOLLM2],
        slots=slots,
        engine="test",
        version="0",
        hardware={},
        channel_name=f"test.worker.{uuid.uuid4().hex}",
    ).worker


def create_job(user, reply_channel: str) -> Job:
    return job_create(
        user=user,
        model=LlmModel.objects.get(id=SMOLLM2),
        public_id=completion_id(),
        request={"messages": [{"role": "user", "content": "hi"}], "max_tokens": 16, "stream": True},
        stream=True,
        max_tokens=16,
        prompt_tokens_estimate=10,
        token_type="auto",
        reply_channel=reply_channel,
    )


def test_a_silent_worker_is_reaped_and_its_jobs_released(platform, operator, customer):
    async def scenario():
        layer = get_channel_layer()
        waiting, streaming = await layer.new_channel(), await layer.new_channel()
        dead = await sync_to_async(register)(operator.user, "dead", slots=2)
        silent_job = await sync_to_async(create_job)(customer.user, waiting)
        running_job = await sync_to_async(create_job)(customer.user, streaming)
        await sync_to_async(job_mark_running)(
            job_id=running_job.id, channel_name=dead.channel_name, first_token_at=timezone.now()
        )
        # Its server died long ago: no heartbeat since.
        await sync_to_async(
            lambda: Worker.objects.filter(pk=dead.pk).update(last_heartbeat=timezone.now() - timedelta(minutes=5))
        )()
        await sync_to_async(register)(operator.user, "alive", slots=1)
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
    worker = register(operator.user, "fresh")
    reap_stale_task()
    worker.refresh_from_db()
    assert worker.status == Worker.Status.ONLINE


def test_an_abandoned_queued_job_is_expired(platform, customer):
    async def scenario():
        reply = await get_channel_layer().new_channel()
        job = await sync_to_async(create_job)(customer.user, reply)
        await sync_to_async(
            lambda: Job.objects.filter(pk=job.pk).update(created_at=timezone.now() - timedelta(hours=1))
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
