"""Who pays and who earns when a job does not end as planned, over the real socket consumer: a client
leaving pays its prompt and what it got, a worker breaking off earns nothing, an owner serving their
own account earns nothing; tokens-per-minute counts what every request used."""

from decimal import Decimal

import pytest

from inference.counting import model_counter
from inference.models import Job, LlmModel
from tests.billing.invariants import ledger_invariants  # noqa: F401  (autouse)
from tests.e2e.charging_checks import balances, entries_of, expected_usd, held, in_tokens, sogni_rate_set
from tests.inference.platform import HttpCall, WorkerSocket, run, smollm2_count
from tests.support.factories import SMOLLM2

# 1,500 words: its platform count is far above the 3 tokens delivered.
LONG_PROMPT = [{"role": "user", "content": " ".join(["word"] * 1500)}]


@pytest.fixture
def priced(catalog):
    sogni_rate_set()
    model = LlmModel.objects.get(id=SMOLLM2)
    return {"input_usd_per_1m": model.input_price_usd_per_m, "output_usd_per_1m": model.output_price_usd_per_m}


def platform_prompt_count(job: Job) -> int:
    """The platform's count of `job`'s prompt for SmolLM2."""
    return model_counter(LlmModel.objects.get(id=SMOLLM2)).prompt(job.request)


def chat(key, **body):
    return HttpCall("/v1/chat/completions", key=key, body={"model": SMOLLM2, **body})


async def long_prompt_streaming(operator, customer) -> tuple[WorkerSocket, HttpCall, str]:
    """A worker online and the customer's 1,500-word request three tokens into its stream."""
    worker = WorkerSocket(operator.key)
    await worker.hello()
    call = chat(customer.key, messages=LONG_PROMPT, stream=True, max_tokens=64)
    return worker, call, await stream_three_tokens(worker, call)


async def stream_three_tokens(worker: WorkerSocket, call: HttpCall) -> str:
    """`call` started and streaming three tokens from `worker`; the job's id."""
    await call.start()
    job = await worker.job()
    for word in ("One", " two", " three"):
        await worker.delta(job["job_id"], word)
    await call.read_until(b"three")
    return job["job_id"]


def test_a_client_leaving_after_three_tokens_pays_its_prompt_and_the_worker_earns_its_share(
    platform, priced, operator, customer
):
    start, operator_start = balances(customer.user), balances(operator.user)

    async def scenario():
        worker, call, job_id = await long_prompt_streaming(operator, customer)
        await call.client_disconnects()
        assert await worker.receive() == {"type": "cancel", "job_id": job_id}
        await worker.send({"type": "error", "job_id": job_id, "code": "cancelled", "message": "stopped"})
        await worker.disconnect(code=1000)

    run(scenario)
    job = Job.objects.get()
    assert (job.status, job.completion_tokens) == (Job.Status.CANCELLED, 3)
    # The prompt is billed at the platform's count of it, not at nothing.
    assert job.prompt_tokens == job.prompt_tokens_estimate > 1500
    usd = expected_usd(priced, prompt_tokens=job.prompt_tokens, completion_tokens=3)
    charge = in_tokens(usd, "spark", paying=True)
    assert charge > in_tokens(expected_usd(priced, prompt_tokens=0, completion_tokens=3), "spark", paying=True) * 100
    reward = in_tokens(usd * Decimal("0.70"), "sogni", paying=False)
    assert entries_of(job)["charge"] == -charge
    assert entries_of(job)["reward"] == reward > 0
    assert balances(customer.user)["spark"] == start["spark"] - charge
    assert balances(operator.user)["sogni"] == operator_start.get("sogni", 0) + reward
    assert held(customer.user) == {"spark": 0, "sogni": 0}


@pytest.mark.parametrize("breaks_off", ["error", "drop"])
def test_a_worker_breaking_off_after_the_first_token_earns_nothing_and_the_prompt_is_free(
    platform, priced, operator, customer, breaks_off
):
    start, operator_start = balances(customer.user), balances(operator.user)

    async def scenario():
        worker, call, job_id = await long_prompt_streaming(operator, customer)
        if breaks_off == "error":
            await worker.send({"type": "error", "job_id": job_id, "code": "engine_error", "message": "oom"})
            await worker.disconnect(code=1000)
        else:
            await worker.disconnect()
        return await call.finish()

    reply = run(scenario)
    assert reply.events()[-2]["error"]["code"] in ("engine_error", "worker_disconnected")
    job = Job.objects.get()
    assert (job.status, job.completion_tokens, job.prompt_tokens) == (Job.Status.FAILED, 3, 0)
    charge = in_tokens(expected_usd(priced, prompt_tokens=0, completion_tokens=3), "spark", paying=True)
    assert entries_of(job)["charge"] == -charge
    assert "reward" not in entries_of(job)
    assert balances(customer.user)["spark"] == start["spark"] - charge
    assert balances(operator.user) == operator_start
    assert held(customer.user) == {"spark": 0, "sogni": 0}


def test_an_owner_served_by_their_own_worker_pays_and_earns_nothing(platform, priced, operator):
    start = balances(operator.user)

    async def scenario():
        worker = WorkerSocket(operator.key)
        await worker.hello()
        call = chat(operator.key, messages=[{"role": "user", "content": "hi"}], stream=True, max_tokens=8)
        await call.start()
        job = await worker.job()
        await worker.delta(job["job_id"], "Hello", tokens=2)
        await worker.done(job["job_id"], completion_tokens=2, prompt_tokens=5)
        reply = await call.finish()
        await worker.disconnect(code=1000)
        return reply

    reply = run(scenario)
    assert reply.status == 200
    job = Job.objects.get()
    # Billed on the platform's counts of the prompt and of the "Hello" relayed, not on the claims (5 and 2).
    counted = (platform_prompt_count(job), smollm2_count("Hello"))
    assert (job.token_counting, job.prompt_tokens, job.completion_tokens) == ("exact", *counted)
    usd = expected_usd(priced, prompt_tokens=counted[0], completion_tokens=counted[1])
    charge = in_tokens(usd, "spark", paying=True)
    assert entries_of(job)["charge"] == -charge
    assert "reward" not in entries_of(job)
    assert job.worker.owner_id == job.user_id
    after = balances(operator.user)
    assert after["spark"] == start["spark"] - charge
    assert after.get("sogni", 0) == start.get("sogni", 0)


def test_tokens_per_minute_count_what_cancelled_and_failed_requests_used(platform, priced, operator, customer):
    """x-ratelimit-remaining-tokens after each request: the worst case while it runs, what it used after."""
    from ratelimits.services import account_limits_set

    limit = 100_000
    account_limits_set(user=customer.user, requests_per_minute=0, tokens_per_minute=limit)
    short = [{"role": "user", "content": "hi"}]

    async def scenario():
        worker = WorkerSocket(operator.key)
        await worker.hello()
        remaining = []
        # A client that leaves after three tokens.
        call = chat(customer.key, messages=LONG_PROMPT, stream=True, max_tokens=64)
        job_id = await stream_three_tokens(worker, call)
        remaining.append(int(call.reply.headers["x-ratelimit-remaining-tokens"]))
        await call.client_disconnects()
        await worker.receive()
        await worker.send({"type": "error", "job_id": job_id, "code": "cancelled", "message": "stopped"})
        # A worker that errors after three tokens.
        call = chat(customer.key, messages=LONG_PROMPT, stream=True, max_tokens=64)
        job_id = await stream_three_tokens(worker, call)
        remaining.append(int(call.reply.headers["x-ratelimit-remaining-tokens"]))
        await worker.send({"type": "error", "job_id": job_id, "code": "engine_error", "message": "oom"})
        await call.finish()
        # A request that completes.
        call = chat(customer.key, messages=short, stream=True, max_tokens=8)
        await call.start()
        job = await worker.job()
        await worker.delta(job["job_id"], "Hi")
        await worker.done(job["job_id"], completion_tokens=1, prompt_tokens=4)
        await call.finish()
        remaining.append(int(call.reply.headers["x-ratelimit-remaining-tokens"]))
        await worker.disconnect(code=1000)
        return remaining

    remaining = run(scenario)
    cancelled, failed, completed = Job.objects.order_by("created_at")
    assert (cancelled.status, failed.status, completed.status) == ("cancelled", "failed", "completed")
    worst = [job.prompt_tokens_estimate + job.max_tokens for job in (cancelled, failed, completed)]
    used = [job.prompt_tokens_estimate + 3 for job in (cancelled, failed)]
    # Each response's headers count the earlier requests as used and its own worst case as reserved.
    assert remaining == [
        limit - worst[0],
        limit - used[0] - worst[1],
        limit - used[0] - used[1] - worst[2],
    ]

    # The completed request's reservation became its usage (the platform's counts, not the claimed 4 + 1);
    # the next one is refused at once.
    completed_used = platform_prompt_count(completed) + smollm2_count("Hi")
    assert completed.prompt_tokens + completed.completion_tokens == completed_used
    account_limits_set(user=customer.user, requests_per_minute=0, tokens_per_minute=sum(used) + completed_used)
    reply = run(chat(customer.key, messages=short, max_tokens=8).finish)
    assert reply.status == 429
    assert reply.json()["error"]["code"] == "rate_limit_exceeded"
    assert f"Used {sum(used) + completed_used}," in reply.json()["error"]["message"]
