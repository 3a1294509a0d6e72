"""Dishonest workers over the real socket consumer: billed on the platform's counts of what was relayed,
their claims recorded as discrepancies, their output capped."""

from inference.counting import model_counter
from inference.models import Job, LlmModel, Worker
from inference.openai.model_objects import model_pricing
from tests.e2e.charging_checks import (
    WORKER_SHARE,
    balances,
    entries_of,
    expected_usd,
    in_tokens,
    ledger_is_sound,
    sogni_rate_set,
)
from tests.inference.platform import HttpCall, WorkerSocket, run, smollm2_count, smollm2_prompt_count
from tests.support.factories import SMOLLM2

HI = [{"role": "user", "content": "Say hello"}]


def chat(key, **body):
    body = {"model": SMOLLM2, "messages": HI, "stream": True, "stream_options": {"include_usage": True}, **body}
    return HttpCall("/v1/chat/completions", key=key, body=body)


def pricing() -> dict:
    return model_pricing(LlmModel.objects.get(id=SMOLLM2))


def test_an_inflating_worker_bills_what_was_relayed_and_its_claims_are_a_discrepancy(platform, operator, customer):
    sogni_rate_set()
    operator_start = balances(operator.user)

    async def scenario():
        worker = WorkerSocket(operator.key)
        await worker.hello()
        call = chat(customer.key, max_tokens=64)
        await call.start()
        job = await worker.job()
        await worker.delta(job["job_id"], "x", tokens=65_536)
        await worker.done(job["job_id"], prompt_tokens=10_000_000, completion_tokens=10_000_000)
        reply = await call.finish()
        await worker.disconnect(code=1000)
        return reply

    reply = run(scenario)
    job = Job.objects.select_related("worker").get()
    prompt = model_counter(LlmModel.objects.get(id=SMOLLM2)).prompt(job.request)
    usage = reply.events()[-2]["usage"]
    assert (usage["prompt_tokens"], usage["completion_tokens"]) == (prompt, smollm2_count("x")) == (prompt, 1)
    usd = expected_usd(pricing(), prompt_tokens=prompt, completion_tokens=1)
    assert entries_of(job)["charge"] == -in_tokens(usd, "spark", paying=True)
    assert balances(operator.user)["sogni"] == operator_start["sogni"] + in_tokens(
        usd * WORKER_SHARE, "sogni", paying=False
    )
    assert (job.prompt_tokens, job.completion_tokens, job.token_counting) == (prompt, 1, "exact")
    assert (job.claimed_prompt_tokens, job.claimed_completion_tokens) == (10_000_000, 10_000_000)
    assert job.claim_discrepancy
    worker = Worker.objects.get()
    assert (worker.discrepancies, worker.faults_in_window, worker.tokens_generated) == (1, 1, 1)
    ledger_is_sound()


def test_repeated_discrepancies_pause_the_worker(platform, operator, customer):
    platform.WORKER_MAX_FAILURES_PER_HOUR = 2

    async def scenario():
        worker = WorkerSocket(operator.key)
        await worker.hello()
        for _ in range(3):
            call = chat(customer.key, max_tokens=8)
            await call.start()
            job = await worker.job()
            await worker.delta(job["job_id"], "Hi", tokens=500)
            await worker.done(job["job_id"], completion_tokens=500)
            await call.finish()
        await worker.disconnect(code=1000)

    run(scenario)
    worker = Worker.objects.get()
    assert worker.discrepancies == 3 and worker.paused_until is not None


def test_an_honest_claim_is_no_discrepancy(platform, operator, customer):
    text = "Hello there, how are you today?"
    tokens = smollm2_count(text)

    async def scenario():
        worker = WorkerSocket(operator.key)
        await worker.hello()
        call = chat(customer.key, max_tokens=64)
        await call.start()
        job = await worker.job()
        prompt = await smollm2_prompt_count(job["request"])
        await worker.delta(job["job_id"], text, tokens=tokens)
        await worker.done(job["job_id"], prompt_tokens=prompt, completion_tokens=tokens)
        await call.finish()
        await worker.disconnect(code=1000)

    run(scenario)
    job = Job.objects.get()
    assert (job.completion_tokens, job.claimed_completion_tokens, job.claim_discrepancy) == (tokens, tokens, False)
    assert Worker.objects.get().discrepancies == 0


def test_megabytes_claimed_as_no_tokens_fail_the_job_at_the_output_cap(platform, operator, customer):
    sogni_rate_set()
    operator_start = balances(operator.user)
    flood = "y" * 60_000

    async def scenario():
        worker = WorkerSocket(operator.key)
        await worker.hello()
        call = chat(customer.key, max_tokens=16)  # cap: 16 × 32 + 4096 bytes
        await call.start()
        job = await worker.job()
        await worker.delta(job["job_id"], "Hello", tokens=1)
        await call.read_until(b"Hello")
        for _ in range(20):  # 1.2 MB
            await worker.delta(job["job_id"], flood, tokens=0)
        cancel = await worker.receive()
        reply = await call.finish()
        await worker.disconnect(code=1000)
        return job, cancel, reply

    job_frame, cancel, reply = run(scenario)
    assert cancel == {"type": "cancel", "job_id": job_frame["job_id"]}
    assert reply.content() == "Hello" and b"yyy" not in reply.body
    assert reply.events()[-2]["error"]["code"] == "output_limit_exceeded"
    job = Job.objects.get()
    assert (job.status, job.error_code) == (Job.Status.FAILED, "output_limit_exceeded")
    assert (job.completion_tokens, job.output_bytes) == (smollm2_count("Hello"), 5)
    # The customer pays the completion relayed; the worker earns nothing and has a fault.
    usd = expected_usd(pricing(), prompt_tokens=0, completion_tokens=job.completion_tokens)
    assert entries_of(job)["charge"] == -in_tokens(usd, "spark", paying=True)
    assert "reward" not in entries_of(job)
    assert balances(operator.user) == operator_start
    worker = Worker.objects.get()
    assert (worker.jobs_failed, worker.faults_in_window) == (1, 1)
    ledger_is_sound()


def test_the_output_cap_is_generous_for_max_tokens(platform, operator, customer):
    """Multi-byte text up to max_tokens × 32 bytes passes."""

    async def scenario():
        worker = WorkerSocket(operator.key)
        await worker.hello()
        call = chat(customer.key, max_tokens=16)
        await call.start()
        job = await worker.job()
        for _ in range(16):
            await worker.delta(job["job_id"], "😀" * 8, tokens=1)  # 32 bytes each
        await worker.done(job["job_id"], completion_tokens=16)
        reply = await call.finish()
        await worker.disconnect(code=1000)
        return reply

    reply = run(scenario)
    assert reply.content() == "😀" * 128
    assert Job.objects.get().status == Job.Status.COMPLETED
    assert Job.objects.get().output_bytes == 512


def test_tokens_of_a_stop_string_the_engine_did_not_relay_are_no_discrepancy(platform, operator, customer):
    """An engine counts the tokens of the stop string that ended its reply but relays none of it."""
    text = "One, two, three, four, five"
    tokens = smollm2_count(text)

    async def scenario():
        worker = WorkerSocket(operator.key)
        await worker.hello()
        for body in ({"stop": ["<|END|>"]}, {}):
            call = chat(customer.key, max_tokens=64, **body)
            await call.start()
            job = await worker.job()
            prompt = await smollm2_prompt_count(job["request"])
            await worker.delta(job["job_id"], text, tokens=tokens + 4)
            await worker.done(job["job_id"], prompt_tokens=prompt, completion_tokens=tokens + 4)
            await call.finish()
        await worker.disconnect(code=1000)

    run(scenario)
    with_stop, without = Job.objects.order_by("created_at")
    assert with_stop.completion_tokens == without.completion_tokens == tokens
    assert (with_stop.claim_discrepancy, without.claim_discrepancy) == (False, True)
