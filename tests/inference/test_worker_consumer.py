"""The worker socket: registration, refusal, frame validation, ownership, disconnects."""

import asyncio
import json
import logging

import pytest
from asgiref.sync import sync_to_async

from accounts.selectors import api_key_authenticate
from accounts.services import api_key_disable
from billing.models import Hold
from inference.models import Job, Worker
from inference.selectors import online_worker_counts
from inference.services import worker_ban, worker_unban
from tests.inference.platform import HttpCall, WorkerSocket, run, smollm2_count, wait_for
from tests.support.factories import QWEN, SMOLLM2, account_create

HI = [{"role": "user", "content": "Say hello"}]
BOGUS_KEY = "sk-sogni-AAAAAAAAAAAA-" + "b" * 40


def chat(key, **body):
    return HttpCall("/v1/chat/completions", key=key, body={"model": SMOLLM2, "messages": HI, "stream": True, **body})


def test_worker_registers_with_its_key(platform, operator):
    async def scenario():
        worker = WorkerSocket(operator.key)
        welcome = await worker.hello(name="box-1", models=[SMOLLM2, QWEN, "no-such-model"], slots=3)
        counts_online = await sync_to_async(online_worker_counts)()
        await worker.disconnect(code=1000)
        return welcome, counts_online

    welcome, counts_online = run(scenario)
    assert welcome["protocol"] == 1
    assert welcome["models"] == [SMOLLM2, QWEN]
    assert welcome["rejected_models"] == ["no-such-model"]
    assert welcome["heartbeat_interval"] > 0
    assert counts_online == {SMOLLM2: 1, QWEN: 1}
    worker = Worker.objects.get()
    assert (worker.owner, worker.name, worker.slots, worker.engine) == (operator.user, "box-1", 3, "test")
    assert welcome["worker_id"] == str(worker.pk)
    assert sorted(worker.served_models.values_list("id", flat=True)) == sorted([SMOLLM2, QWEN])
    assert worker.status == Worker.Status.OFFLINE  # after the disconnect
    assert online_worker_counts() == {}


def test_a_restarted_worker_registers_again_under_the_same_row(platform, operator):
    async def scenario():
        first = WorkerSocket(operator.key)
        await first.hello(name="box-1")
        await first.disconnect()
        second = WorkerSocket(operator.key)
        await second.hello(name="box-1", slots=2)
        status = await sync_to_async(lambda: Worker.objects.get().status)()
        await second.disconnect()
        return status

    assert run(scenario) == Worker.Status.ONLINE
    assert Worker.objects.count() == 1
    assert Worker.objects.get().slots == 2


@pytest.mark.parametrize("case", ["missing", "malformed", "unknown", "disabled"])
def test_bad_or_disabled_key_cannot_register(platform, operator, case, caplog):
    key = {"missing": None, "malformed": "nope", "unknown": BOGUS_KEY, "disabled": operator.key}[case]
    if case == "disabled":
        api_key_disable(api_key=api_key_authenticate(operator.key), actor=None)

    async def scenario():
        worker = WorkerSocket(key)
        await worker.connect()
        code = await worker.closed_with()
        await worker.disconnect()
        return code

    with caplog.at_level(logging.WARNING, logger="inference.consumers"):
        assert run(scenario) == 4001
    assert "invalid or disabled API key" in caplog.text
    assert not Worker.objects.exists()


def test_the_api_key_header_works_too(platform, operator):
    async def scenario():
        worker = WorkerSocket(None, headers=[(b"api-key", operator.key.encode())])
        await worker.hello()
        await worker.disconnect()

    run(scenario)
    assert Worker.objects.get().owner == operator.user


def test_unsupported_protocol_version_is_4002(platform, operator):
    async def scenario():
        worker = WorkerSocket(operator.key)
        await worker.connect()
        await worker.send({"type": "hello", "protocol": 2, "worker_name": "w", "models": [SMOLLM2], "slots": 1})
        code = await worker.closed_with()
        await worker.disconnect()
        return code

    assert run(scenario) == 4002
    assert not Worker.objects.exists()


def test_no_hello_in_time_is_4004(platform, operator):
    platform.WORKER_HELLO_TIMEOUT = 0.3

    async def scenario():
        worker = WorkerSocket(operator.key)
        await worker.connect()
        code = await worker.closed_with()
        await worker.disconnect()
        return code

    assert run(scenario) == 4004


HELLO = {"type": "hello", "protocol": 1, "worker_name": "w", "models": [SMOLLM2], "slots": 1}
BEFORE_HELLO = {
    "not json": "hello there",
    "a JSON array": "[1, 2]",
    "JSON with NaN": '{"type": "hello", "protocol": NaN}',
    "unknown type": json.dumps({"type": "gimme-jobs"}),
    "a delta before hello": json.dumps({"type": "delta", "job_id": "x", "content": "hi"}),
    "slots as a string": json.dumps({**HELLO, "slots": "2"}),
    "slots zero": json.dumps({**HELLO, "slots": 0}),
    "too many slots": json.dumps({**HELLO, "slots": 65}),
    "no models": json.dumps({**HELLO, "models": []}),
    "a long name": json.dumps({**HELLO, "worker_name": "x" * 65}),
    "huge hardware": json.dumps({**HELLO, "hardware": {"gpus": ["x" * 5000]}}),
    "oversized": json.dumps({**HELLO, "padding": "x" * (64 * 1024)}),
}


@pytest.mark.parametrize("name", list(BEFORE_HELLO))
def test_malformed_frames_before_hello_are_refused(platform, operator, name, caplog):
    async def scenario():
        worker = WorkerSocket(operator.key)
        await worker.connect()
        await worker.send_text(BEFORE_HELLO[name])
        code = await worker.closed_with()
        await worker.disconnect()
        return code

    with caplog.at_level(logging.WARNING, logger="inference.consumers"):
        assert run(scenario) == 4003
    assert "protocol violation" in caplog.text
    assert not Worker.objects.exists()


AFTER_HELLO = {
    "unknown type": {"type": "steal"},
    "hello twice": HELLO,
    "negative tokens": {"type": "delta", "job_id": "j", "content": "x", "tokens": -1},
    "content not a string": {"type": "delta", "job_id": "j", "content": 5},
    "tool call without index": {"type": "delta", "job_id": "j", "tool_calls": [{"name": "f"}]},
    "unknown finish reason": {"type": "done", "job_id": "j", "finish_reason": "bored"},
    "usage not integers": {"type": "done", "job_id": "j", "finish_reason": "stop", "usage": {"prompt_tokens": "9"}},
    "unknown error code": {"type": "error", "job_id": "j", "code": "oops", "message": ""},
    "job id too long": {"type": "delta", "job_id": "j" * 65, "content": "x"},
}


@pytest.mark.parametrize("name", list(AFTER_HELLO))
def test_malformed_frames_close_the_connection_and_spare_other_jobs(platform, operator, customer, name, caplog):
    """A misbehaving worker is closed with 4003; a job on another worker streams on untouched."""
    other = account_create(email="other-operator@example.com")

    async def scenario():
        good = WorkerSocket(other.key)
        await good.hello(name="good")
        call = chat(customer.key)
        await call.start()
        job = await good.job()
        await good.delta(job["job_id"], "steady ")
        bad = WorkerSocket(operator.key)
        await bad.hello(name="bad", models=[QWEN])
        await bad.send(AFTER_HELLO[name])
        code = await bad.closed_with()
        await bad.disconnect()
        await good.delta(job["job_id"], "stream")
        await good.done(job["job_id"], completion_tokens=2)
        reply = await call.finish()
        await good.disconnect()
        return code, reply

    with caplog.at_level(logging.WARNING, logger="inference.consumers"):
        code, reply = run(scenario)
    assert code == 4003
    assert "protocol violation" in caplog.text
    assert reply.content() == "steady stream"
    assert Job.objects.get().status == Job.Status.COMPLETED
    assert Worker.objects.get(name="bad").status == Worker.Status.OFFLINE


def test_frames_for_a_job_not_held_are_dropped(platform, operator, customer, caplog):
    """Worker B cannot write into, finish or fail the job worker A holds."""
    intruder = account_create(email="intruder@example.com")

    async def scenario():
        a = WorkerSocket(operator.key)
        await a.hello(name="a")
        call = chat(customer.key, stream_options={"include_usage": True})
        await call.start()
        job = await a.job()
        b = WorkerSocket(intruder.key)
        await b.hello(name="b")
        await b.delta(job["job_id"], "INJECTED", tokens=500)
        await b.done(job["job_id"], completion_tokens=500)
        await b.send({"type": "error", "job_id": job["job_id"], "code": "engine_error", "message": "x"})
        await b.delta("not-a-job", "x")
        still_open = await b.nothing(0.3)
        await a.delta(job["job_id"], "genuine")
        await a.done(job["job_id"], completion_tokens=1)
        reply = await call.finish()
        await a.disconnect()
        await b.disconnect()
        return still_open, reply

    with caplog.at_level(logging.WARNING, logger="inference.consumers"):
        still_open, reply = run(scenario)
    assert still_open  # dropped and logged; the connection itself may stay
    assert "does not hold" in caplog.text
    assert reply.content() == "genuine"
    # Billed on the platform's count of what was relayed, not the intruder's claims.
    assert reply.events()[-2]["usage"]["completion_tokens"] == smollm2_count("genuine")
    job = Job.objects.get()
    assert (job.status, job.completion_tokens, job.worker.name) == (
        Job.Status.COMPLETED,
        smollm2_count("genuine"),
        "a",
    )


def test_one_deltas_frame_feeds_each_of_its_jobs_and_drops_what_is_not_held(platform, operator, customer, caplog):
    async def scenario():
        worker = WorkerSocket(operator.key)
        welcome = await worker.hello(name="batching", slots=2)
        calls = [chat(customer.key), chat(customer.key)]
        for call in calls:
            await call.start()
        jobs = [(await worker.job())["job_id"] for _ in calls]
        await worker.send({"type": "deltas", "deltas": [
            {"job_id": jobs[0], "content": "one ", "tokens": 1},
            {"job_id": "not-a-job", "content": "INJECTED", "tokens": 9},
            {"job_id": jobs[1], "content": "two ", "tokens": 1},
            {"job_id": jobs[0], "content": "three", "tokens": 1},
        ]})  # fmt: skip
        await worker.done(jobs[0], completion_tokens=2)
        await worker.done(jobs[1], completion_tokens=1)
        replies = {job_id: await call.finish() for job_id, call in zip(jobs, calls, strict=True)}
        await worker.disconnect()
        return welcome, jobs, replies

    with caplog.at_level(logging.WARNING, logger="inference.consumers"):
        welcome, jobs, replies = run(scenario)
    assert "deltas" in welcome["features"]
    assert "does not hold" in caplog.text
    assert replies[jobs[0]].content() == "one three"
    assert replies[jobs[1]].content() == "two "
    counted = {jobs[0]: smollm2_count("one three"), jobs[1]: smollm2_count("two ")}
    assert {str(j.id): j.completion_tokens for j in Job.objects.all()} == counted


def test_disconnect_requeues_tokenless_jobs_and_fails_streamed_ones(platform, operator, customer):
    rescuer = account_create(email="rescuer@example.com")

    async def scenario():
        a = WorkerSocket(operator.key)
        await a.hello(name="a", slots=2)
        streamed, silent = chat(customer.key), chat(customer.key)
        await streamed.start()
        job1 = await a.job()
        await silent.start()
        job2 = await a.job()
        await a.delta(job1["job_id"], "half a sent")
        await streamed.read_until(b"half a sent")
        await a.disconnect(code=1006)  # killed: no goodbye
        b = WorkerSocket(rescuer.key)
        await b.hello(name="b")
        again = await b.job()
        await b.delta(again["job_id"], "rescued")
        await b.done(again["job_id"], completion_tokens=1)
        replies = await streamed.finish(), await silent.finish()
        await b.disconnect()
        return job1, job2, again, replies

    job1, job2, again, (streamed, silent) = run(scenario)
    assert again["job_id"] == job2["job_id"]
    assert again["request"] == job2["request"]
    events = streamed.events()
    assert streamed.content() == "half a sent"
    assert events[-2]["error"]["code"] == "worker_disconnected"
    assert events[-1] == "[DONE]"
    assert silent.content() == "rescued"
    failed, rescued = Job.objects.get(id=job1["job_id"]), Job.objects.get(id=job2["job_id"])
    assert (failed.status, failed.error_code, failed.completion_tokens) == (
        Job.Status.FAILED,
        "worker_disconnected",
        smollm2_count("half a sent"),
    )
    assert (rescued.status, rescued.worker.name, rescued.attempts) == (Job.Status.COMPLETED, "b", 2)
    a = Worker.objects.get(name="a")
    assert (a.status, a.in_flight) == (Worker.Status.OFFLINE, 0)


def test_a_retryable_error_before_any_token_moves_the_job(platform, operator, customer):
    other = account_create(email="other-operator@example.com")

    async def scenario():
        a = WorkerSocket(operator.key)
        await a.hello(name="a", slots=1)
        call = chat(customer.key)
        await call.start()
        job = await a.job()
        b = WorkerSocket(other.key)
        await b.hello(name="b", slots=1)
        await a.send({"type": "error", "job_id": job["job_id"], "code": "overloaded", "message": "", "retryable": True})
        # Both have a free slot now; whoever gets the job answers it.
        receivers = {asyncio.ensure_future(a.job()): a, asyncio.ensure_future(b.job()): b}
        done, pending = await asyncio.wait(receivers, return_when=asyncio.FIRST_COMPLETED, timeout=10)
        for task in pending:
            task.cancel()
        first = next(iter(done))
        frame, runner = first.result(), receivers[first]
        await runner.delta(frame["job_id"], "retried")
        await runner.done(frame["job_id"], completion_tokens=1)
        reply = await call.finish()
        await a.disconnect()
        await b.disconnect()
        return job, frame, reply

    job, frame, reply = run(scenario)
    assert frame["job_id"] == job["job_id"]
    assert reply.content() == "retried"
    row = Job.objects.get(id=job["job_id"])
    assert (row.status, row.attempts) == (Job.Status.COMPLETED, 2)


def test_a_non_retryable_error_fails_the_request(platform, operator, customer):
    async def scenario():
        worker = WorkerSocket(operator.key)
        await worker.hello()
        pending = asyncio.ensure_future(
            HttpCall("/v1/chat/completions", key=customer.key, body={"model": SMOLLM2, "messages": HI}).finish()
        )
        job = await worker.job()
        message = "prompt is 5000 tokens; the context is 2048"
        await worker.send(
            {"type": "error", "job_id": job["job_id"], "code": "context_length_exceeded", "message": message}
        )
        reply = await pending
        await worker.disconnect()
        return reply

    reply = run(scenario)
    assert reply.status == 400
    assert reply.json()["error"]["code"] == "context_length_exceeded"
    assert Job.objects.get().status == Job.Status.FAILED
    assert Worker.objects.get().in_flight == 0


def test_too_many_frames_per_second_is_4003(platform, operator):
    platform.WORKER_MAX_MESSAGES_PER_SECOND = 5

    async def scenario():
        worker = WorkerSocket(operator.key)
        await worker.hello()
        for _ in range(30):
            await worker.send({"type": "heartbeat", "running": []})
        code = await worker.closed_with()
        await worker.disconnect()
        return code

    assert run(scenario) == 4003


def test_a_silent_worker_is_closed_and_goes_offline(platform, operator):
    platform.WORKER_HEARTBEAT_SECONDS = 0.1

    async def scenario():
        worker = WorkerSocket(operator.key)
        await worker.hello()
        code = await worker.closed_with()
        await worker.disconnect()
        return code

    assert run(scenario) == 4009
    assert Worker.objects.get().status == Worker.Status.OFFLINE


def test_heartbeats_keep_the_worker_fresh(platform, operator):
    platform.WORKER_HEARTBEAT_SECONDS = 1

    async def scenario():
        worker = WorkerSocket(operator.key)
        await worker.hello()
        before = await sync_to_async(lambda: Worker.objects.get().last_heartbeat)()
        await asyncio.sleep(0.6)  # heartbeats are written at most twice per interval
        await worker.send({"type": "heartbeat", "running": []})
        await worker.send({"type": "draining"})
        await worker.nothing(0.3)
        after = await sync_to_async(lambda: Worker.objects.get())()
        await worker.disconnect(code=1000)
        return before, after

    before, after = run(scenario)
    assert after.last_heartbeat > before
    assert after.status == Worker.Status.DRAINING


def test_a_second_live_connection_with_the_same_name_is_refused(platform, operator):
    async def scenario():
        first = WorkerSocket(operator.key)
        await first.hello(name="box")
        second = WorkerSocket(operator.key)
        await second.connect()
        await second.send({**HELLO, "worker_name": "box"})
        code = await second.closed_with()
        await second.disconnect()
        first_alive = await first.nothing(0.2)
        status = await sync_to_async(lambda: Worker.objects.get().status)()
        await first.disconnect()
        return code, first_alive, status

    code, first_alive, status = run(scenario)
    assert code == 4003
    assert first_alive
    assert status == Worker.Status.ONLINE


def test_a_reconnecting_worker_takes_its_row_over_and_its_lost_job_is_billed_as_saved(platform, operator, customer):
    """The worker's connection is lost without a close (its server process died): the same worker
    process comes back at once, naming the id it was given; the row is its again, the job the lost
    connection streamed is charged for the tokens relayed (saved every JOB_PROGRESS_SECONDS), and
    nothing counts against the worker."""
    platform.JOB_PROGRESS_SECONDS = 0.05

    async def saved(job_id: str) -> int:
        return await sync_to_async(lambda: Job.objects.get(id=job_id).completion_tokens)()

    async def scenario():
        lost = WorkerSocket(operator.key)
        welcome = await lost.hello(name="box")
        request = chat(customer.key)
        await request.start()
        job = await lost.job()
        await lost.delta(job["job_id"], "one two three four")
        await request.read_until(b"four")
        await wait_for(lambda: saved(job["job_id"]))
        back = WorkerSocket(operator.key)
        again = await back.hello(name="box", worker_id=welcome["worker_id"])
        code = await lost.closed_with()
        reply = await request.finish()
        await back.disconnect()
        return welcome, again, code, reply, job

    welcome, again, code, reply, job = run(scenario)
    assert again["worker_id"] == welcome["worker_id"]
    assert code == 4003
    assert reply.events()[-2]["error"]["code"] == "worker_disconnected"
    failed = Job.objects.get(id=job["job_id"])
    assert (failed.status, failed.completion_tokens) == (Job.Status.FAILED, smollm2_count("one two three four"))
    hold = Hold.objects.get(job_id=job["job_id"])
    assert (hold.status, hold.completion_tokens) == (Hold.Status.SETTLED, failed.completion_tokens)
    worker = Worker.objects.get(name="box")
    assert (worker.jobs_failed, worker.jobs_aborted, worker.faults_in_window) == (0, 0, 0)


def test_a_banned_worker_is_closed_and_cannot_come_back(platform, operator):
    async def scenario():
        worker = WorkerSocket(operator.key)
        await worker.hello(name="box")
        row = await sync_to_async(lambda: Worker.objects.get())()
        await sync_to_async(worker_ban)(worker=row)
        code = await worker.closed_with()
        await worker.disconnect()
        again = WorkerSocket(operator.key)
        await again.connect()
        await again.send({**HELLO, "worker_name": "box"})
        code_again = await again.closed_with()
        await again.disconnect()
        return code, code_again

    assert run(scenario) == (4008, 4008)
    assert Worker.objects.get().status == Worker.Status.BANNED

    worker_unban(worker=Worker.objects.get())

    async def back():
        worker = WorkerSocket(operator.key)
        await worker.hello(name="box")
        await worker.disconnect(code=1000)

    run(back)


def test_a_ban_is_the_owners_a_new_worker_name_is_refused_too(platform, operator):
    async def scenario():
        worker = WorkerSocket(operator.key)
        await worker.hello(name="box")
        row = await sync_to_async(lambda: Worker.objects.get())()
        await sync_to_async(worker_ban)(worker=row)
        assert await worker.closed_with() == 4008
        await worker.disconnect()
        renamed = WorkerSocket(operator.key)
        await renamed.connect()
        await renamed.send({**HELLO, "worker_name": "box-under-a-new-name"})
        code = await renamed.closed_with()
        await renamed.disconnect()
        return code

    assert run(scenario) == 4008
    assert list(Worker.objects.values_list("name", "status")) == [("box", Worker.Status.BANNED)]


@pytest.mark.parametrize("change", ["disable", "regenerate"])
def test_a_key_change_closes_the_owners_worker_sockets_within_two_seconds(platform, operator, change):
    from accounts.services import api_key_regenerate

    async def scenario():
        workers = [WorkerSocket(operator.key) for _ in range(2)]
        for number, worker in enumerate(workers):
            await worker.hello(name=f"box-{number}")
        api_key = await sync_to_async(api_key_authenticate)(operator.key)
        started = asyncio.get_running_loop().time()
        if change == "disable":
            await sync_to_async(api_key_disable)(api_key=api_key, actor=None, reason="operator")
        else:
            await sync_to_async(api_key_regenerate)(api_key=api_key, actor=operator.user)
        codes = [await worker.closed_with(timeout=2) for worker in workers]
        elapsed = asyncio.get_running_loop().time() - started
        for worker in workers:
            await worker.disconnect()
        return codes, elapsed

    codes, elapsed = run(scenario)
    assert codes == [4001, 4001]
    assert elapsed < 2
    assert set(Worker.objects.values_list("status", flat=True)) == {Worker.Status.OFFLINE}


def test_a_heartbeat_rechecks_the_key(platform, operator):
    """A key that stopped authenticating without a kick (changed straight in the database) is caught
    at the next heartbeat."""
    platform.WORKER_HEARTBEAT_SECONDS = 0.4
    from accounts.models import ApiKey

    async def scenario():
        worker = WorkerSocket(operator.key)
        await worker.hello(name="box")
        await sync_to_async(ApiKey.objects.filter(user=operator.user).update)(is_enabled=False)
        await asyncio.sleep(0.3)
        await worker.send({"type": "heartbeat", "running": []})
        code = await worker.closed_with(timeout=3)
        await worker.disconnect()
        return code

    assert run(scenario) == 4001


def test_connections_per_owner_are_capped(platform, operator):
    platform.WORKER_MAX_CONNECTIONS_PER_OWNER = 2
    other = account_create(email="other-operator@example.com")

    async def scenario():
        first, second = WorkerSocket(operator.key), WorkerSocket(operator.key)
        await first.hello(name="one")
        await second.hello(name="two")
        third = WorkerSocket(operator.key)
        await third.connect()
        await third.send({**HELLO, "worker_name": "three"})
        code = await third.closed_with()
        await third.disconnect()
        elsewhere = WorkerSocket(other.key)  # another account has its own allowance
        await elsewhere.hello(name="three")
        await second.disconnect(code=1000)
        again = WorkerSocket(operator.key)  # a connection closed frees its place
        await again.hello(name="three")
        for worker in (first, elsewhere, again):
            await worker.disconnect(code=1000)
        return code

    assert run(scenario) == 4005


def test_every_delta_of_a_deltas_frame_counts_toward_the_rate_limit(platform, operator, customer):
    platform.WORKER_MAX_MESSAGES_PER_SECOND = 20

    async def scenario():
        worker = WorkerSocket(operator.key)
        await worker.hello(name="batcher")
        call = chat(customer.key)
        await call.start()
        job_id = (await worker.job())["job_id"]
        await worker.send({"type": "deltas", "deltas": [{"job_id": job_id, "content": "a", "tokens": 1}] * 10})
        within = await worker.nothing(0.2)
        # Fewer than 20 frames, but more than 20 deltas within a second.
        await worker.send({"type": "deltas", "deltas": [{"job_id": job_id, "content": "b", "tokens": 1}] * 15})
        code = await worker.closed_with()
        await worker.disconnect()
        await call.finish()
        return within, code

    within, code = run(scenario)
    assert within
    assert code == 4003


def test_an_account_deactivated_in_the_admin_has_its_worker_sockets_closed(platform, operator):
    from django.test import Client
    from django.urls import reverse

    from accounts.models import User

    User.objects.create_superuser("root@example.com", "root-password-123")
    admin = Client()
    assert admin.login(username="root@example.com", password="root-password-123")
    change = reverse("admin:accounts_user_change", args=[operator.user.pk])

    def deactivate():
        form = {"email": operator.user.email, "default_token_type": "auto"}  # is_active left unchecked
        return admin.post(change, form).status_code

    async def scenario():
        worker = WorkerSocket(operator.key)
        await worker.hello(name="box")
        assert await sync_to_async(deactivate)() == 302
        code = await worker.closed_with(timeout=2)
        await worker.disconnect()
        return code

    assert run(scenario) == 4001
    assert not User.objects.get(pk=operator.user.pk).is_active


def test_a_reply_the_client_cannot_keep_up_with_is_ended_not_buffered_without_bound(platform, operator, customer):
    """A worker sends faster than the request reads: past the channel's capacity the request ends with
    an error and the job is cancelled on the worker, instead of the process holding it all."""
    from channels.layers import get_channel_layer

    layer = get_channel_layer()
    capacity = layer.capacity
    layer.capacity = 5

    async def scenario():
        worker = WorkerSocket(operator.key)
        await worker.hello(name="firehose")
        call = chat(customer.key)
        await call.start()
        job_id = (await worker.job())["job_id"]
        # One frame: all of it reaches the reply channel before the request reads any of it.
        await worker.send({"type": "deltas", "deltas": [{"job_id": job_id, "content": "x", "tokens": 1}] * 50})
        reply = await call.finish()
        cancel = await worker.receive()
        await worker.send({"type": "error", "job_id": job_id, "code": "cancelled", "message": ""})
        await worker.nothing(0.3)
        await worker.disconnect(code=1000)
        return reply, cancel

    try:
        reply, cancel = run(scenario)
    finally:
        layer.capacity = capacity
    assert reply.content() == "xxxxx"
    assert reply.events()[-2]["error"]["code"] == "client_too_slow"
    assert cancel["type"] == "cancel"
    job = Job.objects.get()
    assert job.status == Job.Status.CANCELLED
    assert Worker.objects.get().jobs_failed == 0
