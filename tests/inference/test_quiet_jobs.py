"""A request whose assigned job goes quiet reads the job itself: no stream waits forever for a `done`
lost with the channel layer, or for a lapsed lease that no reaper (Celery beat down) acts on."""

from asgiref.sync import sync_to_async

from billing.models import Hold
from inference.models import Job
from tests.inference.platform import HttpCall, WorkerSocket, run
from tests.support.factories import SMOLLM2

HI = [{"role": "user", "content": "Say hello"}]


def _stream(key):
    body = {"model": SMOLLM2, "messages": HI, "stream": True, "stream_options": {"include_usage": True}}
    return HttpCall("/v1/chat/completions", key=key, body=body)


def test_a_done_lost_on_the_way_ends_the_stream_with_the_jobs_usage(platform, operator, customer):
    platform.JOB_QUIET_CHECK_SECONDS = 1

    async def scenario():
        worker = WorkerSocket(operator.key)
        await worker.hello()
        call = _stream(customer.key)
        reply = await call.start()
        job = await worker.job()
        await worker.delta(job["job_id"], "Hello", tokens=1)
        await call.read_until(b"Hello")
        # The job's end goes to a channel nobody reads, as when the channel layer loses it.
        await sync_to_async(Job.objects.filter(pk=job["job_id"]).update)(reply_channel="lost.reply")
        await worker.done(job["job_id"], completion_tokens=1, prompt_tokens=5)
        await call.finish(timeout=10)
        await worker.disconnect()
        return reply

    reply = run(scenario)
    events = reply.events()
    assert events[-1] == "[DONE]"
    assert reply.content() == "Hello"
    usage = events[-2]["usage"]
    job = Job.objects.get()
    assert job.status == Job.Status.COMPLETED
    assert (usage["prompt_tokens"], usage["completion_tokens"]) == (job.prompt_tokens, job.completion_tokens)
    hold = Hold.objects.get(job_id=str(job.pk))
    assert usage["cost"]["amount"] == f"{hold.charged.normalize():f}" and hold.charged > 0


def test_a_lapsed_lease_nobody_reaps_ends_the_stream_with_an_error(platform, operator, customer):
    platform.JOB_QUIET_CHECK_SECONDS = 1
    platform.JOB_LEASE_SECONDS = 1
    platform.JOB_REAPER_SECONDS = 600  # the reaper is down
    platform.WORKER_HEARTBEAT_SECONDS = 60  # the socket itself stays open

    async def scenario():
        worker = WorkerSocket(operator.key)
        await worker.hello()
        call = _stream(customer.key)
        reply = await call.start()
        job = await worker.job()
        await worker.delta(job["job_id"], "Hel", tokens=1)
        await call.finish(timeout=10)  # the worker says nothing more
        await worker.disconnect()
        return reply

    reply = run(scenario)
    events = reply.events()
    assert events[-1] == "[DONE]"
    assert events[-2]["error"]["code"] == "worker_timeout"
    assert Job.objects.get().status == Job.Status.FAILED
