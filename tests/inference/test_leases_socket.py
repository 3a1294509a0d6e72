"""Leases over the real worker socket (the consumer, Redis channel layer, PostgreSQL): heartbeats and
deltas renew them, and in the embedded mode (eager Celery, no beat) the connection's watchdog runs the
reaper, which takes the job back from a silent worker and closes it."""

import asyncio
from datetime import timedelta

from asgiref.sync import sync_to_async
from django.utils import timezone

from inference.models import Job, Worker
from tests.inference.platform import WorkerSocket, job_queued, run, smollm2_count, wait_for


def job_row(job_id: str) -> Job:
    return Job.objects.get(pk=job_id)


def test_heartbeats_and_deltas_renew_the_lease_and_record_delivered_tokens(platform, operator, customer):
    platform.WORKER_HEARTBEAT_SECONDS = 1
    platform.JOB_LEASE_SECONDS = 3
    platform.JOB_PROGRESS_SECONDS = 0.2

    async def scenario():
        socket = WorkerSocket(operator.key)
        await socket.hello(name="renewer")
        await sync_to_async(job_queued)(customer.user, reply_channel="reply.nowhere")
        job_id = (await socket.job())["job_id"]

        await sync_to_async(Job.objects.filter(pk=job_id).update)(lease_expires_at=timezone.now())
        await asyncio.sleep(0.6)  # the consumer writes at most one heartbeat per half interval
        await socket.send({"type": "heartbeat", "running": [job_id]})
        await asyncio.sleep(0.3)
        after_heartbeat, heartbeat_read = await sync_to_async(job_row)(job_id), timezone.now()

        async def saved(claimed: int) -> Job | None:
            job = await sync_to_async(job_row)(job_id)
            return job if job.claimed_completion_tokens == claimed else None

        await socket.delta(job_id, "alpha ", tokens=2)
        deltas_sent = timezone.now()
        await socket.delta(job_id, "beta", tokens=3)
        after_deltas = await wait_for(lambda: saved(5))  # within a progress save or two
        await socket.delta(job_id, "!", tokens=60_000)
        after_inflated = await wait_for(lambda: saved(60_005))
        await socket.disconnect()
        return after_heartbeat, heartbeat_read, after_deltas, deltas_sent, after_inflated

    after_heartbeat, heartbeat_read, after_deltas, deltas_sent, after_inflated = run(scenario)
    assert after_heartbeat.lease_expires_at > heartbeat_read + timedelta(seconds=1)
    assert after_deltas.status == Job.Status.RUNNING
    # The tokens relayed so far are recorded with the lease, by the platform's count.
    assert after_deltas.completion_tokens == smollm2_count("alpha beta")
    assert after_deltas.lease_expires_at > deltas_sent + timedelta(seconds=2)
    # A claim is kept beside the count, never billed.
    assert after_inflated.completion_tokens == smollm2_count("alpha beta!")


async def _at_least_one(count) -> bool:
    return await count() >= 1


def test_in_the_embedded_mode_the_watchdog_reaps_a_lapsed_lease_and_closes_the_silent_worker(
    platform, operator, customer
):
    platform.JOB_REAPER_SECONDS = 0.2
    platform.JOB_LEASE_SECONDS = 2

    async def scenario():
        socket = WorkerSocket(operator.key)
        await socket.hello(name="stuck")
        job = await sync_to_async(job_queued)(customer.user, reply_channel="reply.nowhere")
        assert (await socket.job())["job_id"] == str(job.id)
        past = timezone.now() - timedelta(seconds=10)
        await sync_to_async(Job.objects.filter(pk=job.id).update)(lease_expires_at=past)
        await sync_to_async(Worker.objects.filter(name="stuck").update)(last_heartbeat=past)
        revoked = await socket.receive(timeout=5)
        code = await socket.closed_with(timeout=5)
        # The connection records the fault off its frame loop, as the revoke arrives.
        aborted = sync_to_async(lambda: Worker.objects.get(name="stuck").jobs_aborted)
        await wait_for(lambda: _at_least_one(aborted))
        return job, revoked, code

    job, revoked, code = run(scenario)
    assert revoked == {"type": "cancel", "job_id": str(job.id)}
    assert code == 4009
    job.refresh_from_db()
    assert (job.status, job.worker_id, job.attempts) == (Job.Status.QUEUED, None, 1)
    worker = Worker.objects.get(name="stuck")
    assert (worker.status, worker.in_flight, worker.jobs_aborted) == (Worker.Status.OFFLINE, 0, 1)
