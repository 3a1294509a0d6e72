"""Only failures a worker caused count against it, over the real worker socket (consumer, Redis channel
layer, PostgreSQL): an unprompted `cancelled` does; client errors it reports and the client's cancel do
not. Paused workers are not online in /v1/models, and a worker's own error text never reaches the
customer."""

import asyncio
import json

from asgiref.sync import sync_to_async
from django.test import Client
from django.urls import reverse

from accounts.models import User
from billing.models import LedgerEntry
from inference.models import Job, Worker
from tests.inference.platform import HttpCall, WorkerSocket, run, smollm2_count, smollm2_prompt_count, wait_for
from tests.support.factories import SMOLLM2

HI = [{"role": "user", "content": "Say hello"}]
SECRET = "operator-internal-detail /srv/gpu7 token=abc123"


def chat(key, *, stream=True, **body):
    return HttpCall("/v1/chat/completions", key=key, body={"model": SMOLLM2, "messages": HI, "stream": stream, **body})


async def models_listing(key) -> dict:
    reply = await HttpCall("/v1/models", key=key, body=b"", method="GET").finish()
    return {model["id"]: model for model in reply.json()["data"]}


async def worker_row(name: str) -> Worker:
    return await sync_to_async(Worker.objects.get)(name=name)


def test_an_unprompted_cancel_earns_nothing_is_a_fault_and_pauses_the_worker_past_the_threshold(
    platform, operator, customer
):
    platform.WORKER_MAX_FAILURES_PER_HOUR = 2

    async def scenario():
        worker = WorkerSocket(operator.key)
        await worker.hello(name="quitter")
        replies = []
        for _ in range(3):
            call = chat(customer.key)
            await call.start()
            job = await worker.job()
            await worker.delta(job["job_id"], "x")
            # Nobody asked it to cancel.
            await worker.send({"type": "error", "job_id": job["job_id"], "code": "cancelled", "message": SECRET})
            replies.append(await call.finish())
        paused = await wait_for(lambda: sync_to_async(lambda: worker_state_paused("quitter"))())
        listing = await models_listing(customer.key)
        refused = await chat(customer.key, stream=False).finish()
        await worker.disconnect(code=1000)
        return replies, paused, listing, refused

    replies, paused, listing, refused = run(scenario)
    for reply in replies:
        error = reply.events()[-2]["error"]
        assert error["code"] == "worker_error"
        assert SECRET not in reply.body.decode()
    jobs = list(Job.objects.filter(worker__name="quitter"))
    assert [job.status for job in jobs] == [Job.Status.FAILED] * 3
    assert all(SECRET in job.worker_message and SECRET not in job.error_message for job in jobs)
    assert not LedgerEntry.objects.filter(kind=LedgerEntry.Kind.REWARD).exists()  # no reward
    row = Worker.objects.get(name="quitter")
    assert row.jobs_failed == 3
    assert paused
    # Paused: not online in /v1/models, and the next request finds no worker rather than this one.
    assert (listing[SMOLLM2]["online_workers"], listing[SMOLLM2]["status"]) == (0, "offline")
    assert refused.status == 503 and refused.json()["error"]["code"] == "no_worker_available"
    assert Job.objects.filter(worker__name="quitter").count() == 3


def worker_state_paused(name: str) -> bool:
    from inference.usage.selectors import worker_state

    return worker_state(Worker.objects.get(name=name)) == "paused"


def test_client_errors_and_client_cancels_are_never_the_workers_fault(platform, operator, customer):
    platform.WORKER_MAX_FAILURES_PER_HOUR = 1
    platform.STREAM_HEADERS_WAIT_SECONDS = 5  # the refusals come before any token: real statuses
    # An honest worker claims what the platform counts (a claim off by more is a fault of its own).
    partial, served = smollm2_count("partial"), smollm2_count("served")

    async def scenario():
        worker = WorkerSocket(operator.key)
        await worker.hello(name="honest")
        statuses = []
        for code, stream in [("context_length_exceeded", False), ("invalid_request", True)] * 2:
            pending = asyncio.ensure_future(chat(customer.key, stream=stream).finish())
            job = await worker.job()
            await worker.send({"type": "error", "job_id": job["job_id"], "code": code, "message": SECRET})
            reply = await pending
            body = reply.body.decode()
            assert SECRET not in body
            statuses.append((reply.status, reply.json()["error"]["code"] if not stream else code in body))
        # The client goes away after a token; the worker answers the cancel it was sent.
        call = chat(customer.key)
        await call.start()
        job = await worker.job()
        await worker.delta(job["job_id"], "partial", tokens=partial)
        await call.read_until(b"partial")
        await call.client_disconnects()
        cancel = await worker.receive()
        assert cancel == {"type": "cancel", "job_id": job["job_id"]}
        await worker.send({"type": "error", "job_id": job["job_id"], "code": "cancelled", "message": ""})
        await wait_for(lambda: sync_to_async(lambda: Job.objects.get(id=job["job_id"]).status == "cancelled")())
        listing = await models_listing(customer.key)
        # Still first in line: the next request is served at once.
        call = chat(customer.key, stream=False)
        pending = asyncio.ensure_future(call.finish())
        job = await worker.job()
        await worker.delta(job["job_id"], "served", tokens=served)
        prompt = await smollm2_prompt_count(job["request"])
        await worker.done(job["job_id"], completion_tokens=served, prompt_tokens=prompt)
        reply = await pending
        await worker.disconnect(code=1000)
        return statuses, listing, reply

    statuses, listing, reply = run(scenario)
    # A refusal before the first token has its real status, streamed or not (STREAM_HEADERS_WAIT_SECONDS).
    assert statuses == [(400, "context_length_exceeded"), (400, True)] * 2
    row = Worker.objects.get(name="honest")
    assert (row.jobs_failed, row.jobs_aborted, row.faults_in_window, row.paused_until) == (0, 0, 0, None)
    assert row.discrepancies == 0 and not Job.objects.filter(claim_discrepancy=True).exists()
    assert (listing[SMOLLM2]["online_workers"], listing[SMOLLM2]["status"]) == (1, "online")
    assert reply.status == 200 and json.loads(reply.body)["choices"][0]["message"]["content"] == "served"
    failed = Job.objects.filter(status=Job.Status.FAILED)
    assert failed.count() == 4
    assert all(job.worker_message == SECRET and SECRET not in job.error_message for job in failed)
    # The customer's own view of the job has the platform's words; the operator's has the worker's too.
    job = failed.first()
    customer_view = Client(HTTP_AUTHORIZATION=f"Bearer {customer.key}").get("/v1/generation", {"id": job.public_id})
    assert customer_view.status_code == 200 and SECRET not in customer_view.content.decode()
    assert customer_view.json()["error"]["code"] == job.error_code
    User.objects.create_superuser("root@example.com", "root-password-123")
    operator_view = Client()
    assert operator_view.login(username="root@example.com", password="root-password-123")
    assert SECRET in operator_view.get(reverse("console:job", args=[job.public_id])).content.decode()
