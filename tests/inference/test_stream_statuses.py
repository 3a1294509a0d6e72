"""A streaming request's headers wait for its job's first delta (or STREAM_HEADERS_WAIT_SECONDS), so a
failure known by then is answered with its own status and OpenAI error body, as without streaming."""

import asyncio

from inference.models import Job
from tests.inference.platform import SMOLLM2, HttpCall, WorkerSocket, run

HI = [{"role": "user", "content": "Say hello"}]


def streamed(key, **body):
    return HttpCall("/v1/chat/completions", key=key, body={"model": SMOLLM2, "messages": HI, "stream": True, **body})


def test_a_job_the_worker_refuses_at_once_is_answered_with_its_status(platform, operator, customer):
    platform.STREAM_HEADERS_WAIT_SECONDS = 10

    async def scenario():
        worker = WorkerSocket(operator.key)
        await worker.hello()
        call = streamed(customer.key)
        pending = asyncio.ensure_future(call.finish())
        job = await worker.job()
        await worker.send({"type": "error", "job_id": job["job_id"], "code": "invalid_request", "message": "no"})
        reply = await pending
        await worker.disconnect(code=1000)
        return reply

    reply = run(scenario)
    assert reply.status == 400
    assert reply.headers["content-type"].startswith("application/json")
    assert reply.json()["error"]["code"] == "invalid_request"
    assert reply.json()["error"]["type"] == "invalid_request_error"
    assert Job.objects.get().status == Job.Status.FAILED


def test_no_worker_becoming_available_within_the_bound_is_503(platform, operator, customer):
    platform.STREAM_HEADERS_WAIT_SECONDS = 10
    platform.JOB_QUEUE_TIMEOUT = 0.5

    async def scenario():
        worker = WorkerSocket(operator.key)
        await worker.hello(slots=1)
        busy = streamed(customer.key)
        started = asyncio.ensure_future(busy.start())
        held = await worker.job()
        await worker.delta(held["job_id"], "Hi")
        await started
        reply = await streamed(customer.key).finish()  # queued behind it, then timed out
        await worker.done(held["job_id"], completion_tokens=1)
        await busy.finish()
        await worker.disconnect(code=1000)
        return reply

    reply = run(scenario)
    assert reply.status == 503
    assert reply.headers["retry-after"]
    assert reply.json()["error"]["code"] == "no_worker_available"


def test_after_the_bound_the_stream_starts_and_a_later_failure_is_an_error_event(platform, operator, customer):
    platform.STREAM_HEADERS_WAIT_SECONDS = 0.3

    async def scenario():
        worker = WorkerSocket(operator.key)
        await worker.hello()
        call = streamed(customer.key)
        started = asyncio.ensure_future(call.start())
        job = await worker.job()
        reply = await started  # nothing arrived within the bound: the stream is under way
        await worker.send({"type": "error", "job_id": job["job_id"], "code": "invalid_request", "message": "no"})
        await call.finish()
        await worker.disconnect(code=1000)
        return reply

    reply = run(scenario)
    assert reply.status == 200
    events = reply.events()
    assert events[-1] == "[DONE]" and events[-2]["error"]["code"] == "invalid_request"


def test_a_stream_whose_first_delta_comes_in_time_is_relayed_from_it(platform, operator, customer):
    platform.STREAM_HEADERS_WAIT_SECONDS = 10

    async def scenario():
        worker = WorkerSocket(operator.key)
        await worker.hello()
        call = streamed(customer.key)
        started = asyncio.ensure_future(call.start())
        job = await worker.job()
        await worker.delta(job["job_id"], "Hel")
        reply = await started
        await call.read_until(b"Hel")
        await worker.delta(job["job_id"], "lo")
        await worker.done(job["job_id"], completion_tokens=2)
        await call.finish()
        await worker.disconnect(code=1000)
        return reply

    reply = run(scenario)
    assert reply.status == 200 and reply.content() == "Hello"
    assert reply.events()[-1] == "[DONE]"
