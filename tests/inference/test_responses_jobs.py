"""POST, GET and DELETE /v1/responses through the real ASGI application, with a worker connected over
the real socket consumer: a response is a chat job (same protocol frames, same billing), its failures
arrive as an `error` event and response.failed, and stored responses belong to their account and
last RESPONSES_RETENTION_DAYS."""

import json
from datetime import timedelta

from django.utils import timezone

from inference.models import Job, StoredResponse
from inference.services.stored_responses import stored_responses_purge
from inference.tasks import purge_stored_responses_task
from tests.inference.platform import HttpCall, WorkerSocket, run, smollm2_count
from tests.support.factories import SMOLLM2, account_create
from tests.support.openai_schema import validate


def create(key, **body):
    return HttpCall("/v1/responses", key=key, body={"model": SMOLLM2, "input": "Say hello", **body})


def stored(key, response_id, method="GET"):
    return HttpCall(f"/v1/responses/{response_id}", key=key, body=b"", method=method)


def events(reply) -> list[dict]:
    """The SSE events of a Responses stream: `event: <type>` then `data: <json>`."""
    out = []
    for block in reply.body.decode().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.split("\n") if line and not line.startswith(":"))
        if "data" in lines:
            event = json.loads(lines["data"])
            assert lines["event"] == event["type"]
            validate("ResponseStreamEvent", event)
            out.append(event)
    return out


def test_a_response_is_one_chat_job_and_is_stored_for_its_owner_only(platform, operator, customer):
    async def scenario():
        worker = WorkerSocket(operator.key)
        await worker.hello()
        call = create(customer.key, instructions="Be brief.", stream=True, max_output_tokens=50)
        reply = await call.start()
        job = await worker.job()
        await worker.delta(job["job_id"], "Hel")
        await call.read_until(b"response.output_text.delta")  # relayed as it is generated
        await worker.delta(job["job_id"], "lo!")
        await worker.done(job["job_id"], completion_tokens=2)
        await call.finish()
        await worker.disconnect()
        return reply, job

    reply, frame = run(scenario)
    assert reply.status == 200 and reply.headers["content-type"].startswith("text/event-stream")
    stream = events(reply)
    response = stream[-1]["response"]
    assert stream[-1]["type"] == "response.completed" and response["output"][0]["content"][0]["text"] == "Hello!"
    # The worker got an ordinary chat job: instructions as the system message, the input as the user's.
    assert frame["request"]["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Say hello"},
    ]
    assert frame["request"]["max_tokens"] == 50
    job = Job.objects.get()
    assert job.public_id == response["id"] and job.status == Job.Status.COMPLETED
    assert response["usage"]["output_tokens"] == job.completion_tokens
    assert response["usage"]["input_tokens"] == job.prompt_tokens
    assert response["usage"]["cost"]["amount"] != "0"

    mine = run(stored(customer.key, response["id"]).finish)
    assert mine.status == 200 and mine.json() == response
    stranger = account_create(email="stranger@example.com")
    for method in ("GET", "DELETE"):
        theirs = run(stored(stranger.key, response["id"], method).finish)
        assert theirs.status == 404 and theirs.json()["error"]["code"] == "not_found"
    assert run(stored(None, response["id"]).finish).status == 401
    for method in ("GET", "DELETE"):  # ids that cannot be one (a NUL cannot even reach PostgreSQL)
        for odd in ("\x00", "%", "a" * 1000):
            assert run(stored(customer.key, odd, method).finish).status == 404
    deleted = run(stored(customer.key, response["id"], "DELETE").finish)
    assert deleted.json() == {"id": response["id"], "object": "response", "deleted": True}
    assert run(stored(customer.key, response["id"]).finish).status == 404


def test_a_worker_failure_mid_stream_is_an_error_event_then_response_failed(platform, operator, customer):
    async def scenario():
        worker = WorkerSocket(operator.key)
        await worker.hello()
        call = create(customer.key, stream=True)
        await call.start()
        job = await worker.job()
        await worker.delta(job["job_id"], "Hel")
        await worker.send({"type": "error", "job_id": job["job_id"], "code": "engine_error", "message": "CUDA OOM"})
        reply = await call.finish()
        await worker.disconnect()
        return reply

    stream = events(run(scenario))
    assert [e["type"] for e in stream[-2:]] == ["error", "response.failed"]
    assert stream[-2]["code"] == "engine_error" and "CUDA" not in stream[-2]["message"]
    failed = stream[-1]["response"]
    assert failed["status"] == "failed" and failed["error"]["code"] == "server_error"
    assert failed["output"][0]["content"][0]["text"] == "Hel"  # what was delivered
    assert not StoredResponse.objects.exists()


def test_a_streamed_queue_timeout_fails_the_response(platform, operator, customer):
    async def scenario():
        worker = WorkerSocket(operator.key)
        await worker.hello(slots=1)
        busy = create(customer.key, stream=True)
        await busy.start()
        held = await worker.job()
        reply = await create(customer.key, stream=True).finish()
        await worker.done(held["job_id"], completion_tokens=0)
        await busy.finish()
        await worker.disconnect()
        return reply

    reply = run(scenario)
    assert b": keep-alive" in reply.body  # while it waited in the queue
    stream = events(reply)
    assert [e["type"] for e in stream] == ["response.created", "response.in_progress", "error", "response.failed"]
    assert stream[2]["code"] == "no_worker_available"


def test_errors_known_before_the_job_are_openai_shaped_statuses(platform, customer):
    no_worker = run(create(customer.key).finish)
    assert no_worker.status == 503 and no_worker.json()["error"]["code"] == "no_worker_available"
    too_long = run(create(customer.key, input="hello " * 9000).finish)
    assert too_long.status == 400
    assert (too_long.json()["error"]["code"], too_long.json()["error"]["param"]) == ("context_length_exceeded", "input")
    unknown = run(create(customer.key, previous_response_id="resp_nope").finish)
    assert unknown.status == 404 and unknown.json()["error"]["param"] == "previous_response_id"
    bad_key = run(create("sk-sogni-AAAAAAAAAAAA-" + "b" * 40, tools=[{"type": "web_search"}]).finish)
    assert bad_key.status == 401  # the key first, then the body
    for reply in (no_worker, too_long, unknown, bad_key):
        validate("ErrorResponse", reply.json())
    assert not Job.objects.exists()


def test_stored_responses_last_the_retention_period(platform, customer, settings):
    settings.RESPONSES_RETENTION_DAYS = 30
    old = StoredResponse.objects.create(id="resp_old", user=customer.user, response={"id": "resp_old"}, conversation=[])
    StoredResponse.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=31))
    StoredResponse.objects.create(id="resp_new", user=customer.user, response={"id": "resp_new"}, conversation=[])
    assert run(stored(customer.key, "resp_old").finish).status == 404  # gone before the purge runs
    assert run(stored(customer.key, "resp_new").finish).json() == {"id": "resp_new"}
    purge_stored_responses_task()
    assert list(StoredResponse.objects.values_list("id", flat=True)) == ["resp_new"]
    settings.RESPONSES_RETENTION_DAYS = 0  # kept until deleted
    StoredResponse.objects.filter(pk="resp_new").update(created_at=timezone.now() - timedelta(days=3650))
    assert stored_responses_purge() == 0
    assert run(stored(customer.key, "resp_new").finish).status == 200


def test_a_client_leaving_mid_stream_cancels_the_job_and_stores_nothing(platform, operator, customer):
    async def scenario():
        worker = WorkerSocket(operator.key)
        await worker.hello()
        call = create(customer.key, stream=True)
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
    assert row.completion_tokens == smollm2_count("Once upon")  # charged what was delivered, as chat is
    assert not StoredResponse.objects.exists()
