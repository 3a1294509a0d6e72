"""POST /v1/chat/completions with a worker connected over the real socket consumer."""

import asyncio
import threading

from asgiref.sync import sync_to_async
from django.db import connection, transaction

from inference.models import Job, Worker
from tests.inference.platform import HttpCall, WorkerSocket, backend_pid, run, smollm2_count, wait_until_blocked_by
from tests.support.factories import QWEN, SMOLLM2

HI = [{"role": "user", "content": "Say hello"}]


def chat(key, **body):
    return HttpCall("/v1/chat/completions", key=key, body={"model": SMOLLM2, "messages": HI, **body})


def test_streamed_completion_relays_the_workers_tokens(platform, operator, customer):
    async def scenario():
        worker = WorkerSocket(operator.key)
        await worker.hello()
        call = chat(customer.key, stream=True, stream_options={"include_usage": True}, max_tokens=100_000)
        reply = await call.start()
        job = await worker.job()
        await worker.delta(job["job_id"], "Hel")
        await call.read_until(b"Hel")  # relayed as it is generated, before the job ends
        await worker.delta(job["job_id"], "lo!", tokens=2)
        # A worker claiming more than it sent is billed for what it sent, as the platform counts it.
        await worker.done(job["job_id"], completion_tokens=999, prompt_tokens=5)
        await call.finish()
        await worker.disconnect()
        return reply, job

    reply, job_frame = run(scenario)
    assert reply.status == 200
    assert reply.headers["content-type"].startswith("text/event-stream")
    assert reply.headers["x-request-id"]
    events = reply.events()
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert reply.content() == "Hello!"
    assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]][-1] == "stop"
    assert chunks[-1]["choices"] == []
    job = Job.objects.get()
    assert chunks[-1]["usage"]["completion_tokens"] == smollm2_count("Hello!")
    assert chunks[-1]["usage"]["prompt_tokens"] == job.prompt_tokens_estimate > 5  # the platform's count
    assert {c["id"] for c in chunks} == {job.public_id}
    assert (job.status, job.completion_tokens, job.prompt_tokens) == (
        Job.Status.COMPLETED,
        smollm2_count("Hello!"),
        job.prompt_tokens_estimate,
    )
    assert (job.claimed_prompt_tokens, job.claimed_completion_tokens, job.claim_discrepancy) == (5, 999, True)
    assert job.first_token_at is not None and job.finished_at is not None
    # max_tokens is clamped to the model's limit before the worker sees it.
    assert job_frame["request"]["max_tokens"] == job.max_tokens == 1024
    assert job_frame["request"]["messages"] == HI


def test_non_streamed_completion(platform, operator, customer):
    async def scenario():
        worker = WorkerSocket(operator.key)
        await worker.hello()
        pending = asyncio.ensure_future(chat(customer.key, max_tokens=8).finish())
        job = await worker.job()
        await worker.delta(job["job_id"], "Hello", tokens=1)
        await worker.delta(job["job_id"], " there", tokens=1)
        await worker.done(job["job_id"], completion_tokens=2, finish="length")
        reply = await pending
        await worker.disconnect()
        return reply

    reply = run(scenario)
    assert reply.status == 200
    assert reply.headers["x-request-id"]
    body = reply.json()
    assert body["object"] == "chat.completion"
    assert body["id"] == Job.objects.get().public_id
    assert body["choices"][0]["message"] == {"role": "assistant", "content": "Hello there", "refusal": None}
    assert body["choices"][0]["finish_reason"] == "length"
    assert body["usage"]["completion_tokens"] == 2
    assert body["usage"]["total_tokens"] == body["usage"]["prompt_tokens"] + 2


def test_omitted_model_uses_the_default(platform, operator, customer):
    async def scenario():
        worker = WorkerSocket(operator.key)
        await worker.hello(models=[QWEN])
        pending = asyncio.ensure_future(
            HttpCall("/v1/chat/completions", key=customer.key, body={"messages": HI}).finish()
        )
        job = await worker.job()
        await worker.delta(job["job_id"], "ok")
        await worker.done(job["job_id"], completion_tokens=1)
        reply = await pending
        await worker.disconnect()
        return job, reply

    job, reply = run(scenario)
    # Production mode here (DATABASE_URL is set): the production default.
    assert job["model"] == QWEN
    assert reply.json()["model"] == QWEN


def test_unknown_model_is_404_and_creates_no_job(platform, customer):
    reply = run(chat(customer.key, model="gpt-17").finish)
    assert reply.status == 404
    assert reply.json()["error"]["code"] == "model_not_found"
    assert reply.json()["error"]["param"] == "model"
    assert reply.headers["x-request-id"]
    assert not Job.objects.exists()


def test_bad_key_is_401(platform, customer):
    reply = run(chat("sk-sogni-AAAAAAAAAAAA-" + "b" * 40).finish)
    assert reply.status == 401
    assert reply.json()["error"]["code"] == "invalid_api_key"
    assert reply.headers["x-request-id"]
    assert not Job.objects.exists()


def test_malformed_body_is_400_and_creates_no_job(platform, customer):
    reply = run(HttpCall("/v1/chat/completions", key=customer.key, body=b"{not json").finish)
    assert reply.status == 400
    assert reply.json()["error"]["code"] == "invalid_json"
    assert not Job.objects.exists()


def test_no_online_worker_is_503_at_once(platform, operator, customer):
    async def scenario():
        # A worker serving another model does not count.
        worker = WorkerSocket(operator.key)
        await worker.hello(models=[QWEN])
        reply = await chat(customer.key, stream=True).finish(timeout=5)
        await worker.disconnect()
        return reply

    reply = run(scenario)
    assert reply.status == 503
    assert reply.headers["retry-after"]
    assert reply.json()["error"]["code"] == "no_worker_available"
    assert not Job.objects.exists()


def test_queue_timeout_is_503_with_retry_after(platform, operator, customer):
    async def scenario():
        worker = WorkerSocket(operator.key)
        await worker.hello(slots=1)
        busy = chat(customer.key, stream=True)
        await busy.start()  # takes the only slot
        held = await worker.job()
        reply = await chat(customer.key).finish()
        await worker.done(held["job_id"], completion_tokens=0)
        await busy.finish()
        await worker.disconnect()
        return held, reply

    held, reply = run(scenario)
    assert reply.status == 503
    assert reply.headers["retry-after"]
    assert reply.json()["error"]["code"] == "no_worker_available"
    timed_out = Job.objects.exclude(id=held["job_id"]).get()
    assert (timed_out.status, timed_out.error_code) == (Job.Status.FAILED, "no_worker_available")
    assert timed_out.worker is None


def test_streamed_queue_timeout_ends_with_an_error_event(platform, operator, customer):
    async def scenario():
        worker = WorkerSocket(operator.key)
        await worker.hello(slots=1)
        busy = chat(customer.key, stream=True)
        await busy.start()
        held = await worker.job()
        reply = await chat(customer.key, stream=True).finish()
        await worker.done(held["job_id"], completion_tokens=0)
        await busy.finish()
        await worker.disconnect()
        return reply

    reply = run(scenario)
    assert reply.status == 200
    assert b": keep-alive" in reply.body  # while it waited in the queue
    events = reply.events()
    assert events[-1] == "[DONE]"
    assert events[-2]["error"]["code"] == "no_worker_available"


def test_a_queued_job_runs_when_a_slot_frees(platform, operator, customer):
    async def scenario():
        worker = WorkerSocket(operator.key)
        await worker.hello(slots=1)
        first = chat(customer.key, stream=True)
        await first.start()
        job1 = await worker.job()
        second = chat(customer.key, stream=True)
        await second.start()
        await second.read_until(b": keep-alive")  # queued behind the first
        assert await worker.nothing()
        await worker.delta(job1["job_id"], "one")
        await worker.done(job1["job_id"], completion_tokens=1)
        job2 = await worker.job()
        await worker.delta(job2["job_id"], "two")
        await worker.done(job2["job_id"], completion_tokens=1)
        replies = await first.finish(), await second.finish()
        await worker.disconnect()
        return replies

    first, second = run(scenario)
    assert (first.content(), second.content()) == ("one", "two")
    assert Worker.objects.get().in_flight == 0


def test_client_disconnect_cancels_the_job_on_the_worker(platform, operator, customer):
    async def scenario():
        worker = WorkerSocket(operator.key)
        await worker.hello()
        call = chat(customer.key, stream=True)
        await call.start()
        job = await worker.job()
        await worker.delta(job["job_id"], "Once upon")
        await call.read_until(b"Once upon")
        await call.client_disconnects()
        cancel = await worker.receive()
        await worker.send({"type": "error", "job_id": job["job_id"], "code": "cancelled", "message": "stopped"})
        await worker.disconnect(code=1000)
        return job, cancel

    job, cancel = run(scenario)
    assert cancel == {"type": "cancel", "job_id": job["job_id"]}
    row = Job.objects.get()
    assert row.status == Job.Status.CANCELLED
    assert row.completion_tokens == smollm2_count("Once upon")  # what was delivered before the client left


def test_client_disconnect_while_queued_cancels_without_a_worker(platform, operator, customer):
    async def scenario():
        worker = WorkerSocket(operator.key)
        await worker.hello(slots=1)
        busy = chat(customer.key, stream=True)
        await busy.start()
        first = await worker.job()
        waiting = chat(customer.key, stream=True)
        await waiting.start()
        await waiting.read_until(b": keep-alive")
        await waiting.client_disconnects()
        await worker.done(first["job_id"], completion_tokens=0)
        nothing_more = await worker.nothing(0.5)
        await busy.finish()
        await worker.disconnect()
        return first, nothing_more

    first, nothing_more = run(scenario)
    assert nothing_more  # the cancelled job is never sent to the freed slot
    cancelled = Job.objects.exclude(id=first["job_id"]).get()
    assert cancelled.status == Job.Status.CANCELLED
    assert cancelled.worker is None


def test_wrong_method_is_405(platform, customer):
    reply = run(HttpCall("/v1/chat/completions", key=customer.key, body=b"", method="GET").finish)
    assert reply.status == 405
    assert reply.json()["error"]["code"] == "method_not_allowed"


def test_an_oversized_body_is_413_and_creates_no_job(platform, customer, settings):
    body = {"model": SMOLLM2, "messages": [{"role": "user", "content": "x" * (settings.MAX_REQUEST_BYTES + 10)}]}
    reply = run(HttpCall("/v1/chat/completions", key=customer.key, body=body).finish)
    assert reply.status == 413
    assert reply.json()["error"]["code"] == "request_too_large"
    assert not Job.objects.exists()


def test_waiting_streams_hold_no_database_connection(platform, operator, customer):
    """A stream lasts as long as the generation: it must not pin a PostgreSQL connection meanwhile."""
    from django.db import connection

    def connections_now() -> int:
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()")
            return cursor.fetchone()[0]

    async def scenario():
        worker = WorkerSocket(operator.key)
        await worker.hello(slots=4)
        before = await sync_to_async(connections_now)()
        calls = [chat(customer.key, stream=True) for _ in range(6)]
        for call in calls:
            await call.start()
        jobs = [await worker.job() for _ in range(4)]  # four running, two queued
        for job in jobs:
            await worker.delta(job["job_id"], "tick")
        for call in calls[:4]:
            await call.read_until(b"tick")
        for call in calls[4:]:
            await call.read_until(b": keep-alive")
        during = await sync_to_async(connections_now)()
        for job in jobs:
            await worker.done(job["job_id"], completion_tokens=1)
        for _ in range(2):
            job = await worker.job()
            await worker.done(job["job_id"], completion_tokens=0)
        for call in calls:
            await call.finish()
        await worker.disconnect()
        return before, during

    before, during = run(scenario)
    assert during <= before + 1, (before, during)


def test_requests_over_the_rate_limit_are_429_and_create_no_job(platform, operator, customer):
    platform.RATE_LIMIT_RPM = 1

    async def scenario():
        worker = WorkerSocket(operator.key)
        await worker.hello()
        pending = asyncio.ensure_future(chat(customer.key).finish())
        job = await worker.job()
        await worker.delta(job["job_id"], "ok")
        await worker.done(job["job_id"], completion_tokens=1)
        first = await pending
        second = await chat(customer.key).finish()
        await worker.disconnect()
        return first, second

    first, second = run(scenario)
    assert first.status == 200
    assert first.headers["x-ratelimit-limit-requests"] == "1"
    assert second.status == 429
    assert second.json()["error"]["code"] == "rate_limit_exceeded"
    assert second.headers["retry-after"]
    assert Job.objects.count() == 1


def test_a_client_gone_while_its_job_opens_gets_the_job_cancelled_and_pays_nothing(platform, operator, customer):
    """The client hangs up while the job is being opened (here: its hold waits for the wallet row).
    The opening finishes in its thread regardless; the job must then be cancelled on the worker and
    its hold released, not run for nobody and be charged in full."""
    from billing.models import Hold, Wallet

    locked, release, holder = threading.Event(), threading.Event(), {}

    def lock_the_wallet() -> None:
        try:
            with transaction.atomic():
                list(Wallet.objects.select_for_update().filter(user=customer.user))
                holder["pid"] = backend_pid()
                locked.set()
                release.wait(10)
        finally:
            connection.close()

    async def scenario():
        worker = WorkerSocket(operator.key)
        await worker.hello(slots=1)
        thread = threading.Thread(target=lock_the_wallet)
        thread.start()
        assert await sync_to_async(locked.wait)(10)
        call = chat(customer.key, stream=True)
        await call.communicator.send_input({"type": "http.request", "body": call.raw, "more_body": False})
        # Off the test's own thread, so this wait holds up no thread-sensitive call.
        blocked = sync_to_async(wait_until_blocked_by, thread_sensitive=False)
        await blocked(holder["pid"])  # the opening waits in its hold
        await call.communicator.send_input({"type": "http.disconnect"})
        await asyncio.sleep(0.2)  # the view is cancelled meanwhile
        release.set()
        await sync_to_async(thread.join)(10)
        job = await worker.job()
        cancel = await worker.receive()
        await worker.send({"type": "error", "job_id": job["job_id"], "code": "cancelled", "message": "stopped"})
        await call.communicator.wait(10)
        await worker.disconnect(code=1000)
        return job, cancel

    job, cancel = run(scenario)
    assert cancel == {"type": "cancel", "job_id": job["job_id"]}
    assert Job.objects.get().status == Job.Status.CANCELLED
    assert Hold.objects.get(job_id=job["job_id"]).status == Hold.Status.RELEASED
