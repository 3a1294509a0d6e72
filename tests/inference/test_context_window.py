"""A prompt the model's context window cannot hold is the client's error, found before any job exists."""

import asyncio

from billing.models import Hold
from inference.counting import model_counter
from inference.models import Job, LlmModel, Worker
from tests.inference.platform import HttpCall, WorkerSocket, run, smollm2_prompt_count
from tests.support.factories import SMOLLM2

LONG = [{"role": "user", "content": "hello " * 8300}]  # past SmolLM2's 8,192 tokens


def chat(key, **body):
    return HttpCall("/v1/chat/completions", key=key, body={"model": SMOLLM2, **body})


def test_prompts_over_the_window_are_400_before_any_job_and_the_worker_stays_serving(platform, operator, customer):
    async def scenario():
        worker = WorkerSocket(operator.key)
        await worker.hello()
        refused = [await chat(customer.key, messages=LONG, stream=i % 2 == 0).finish() for i in range(10)]
        worker_saw_nothing = await worker.nothing(0.3)
        served = asyncio.ensure_future(chat(customer.key, messages=[{"role": "user", "content": "Hi"}]).finish())
        job = await worker.job()
        await worker.delta(job["job_id"], "Hello")
        await worker.done(job["job_id"], completion_tokens=1, prompt_tokens=await smollm2_prompt_count(job["request"]))
        reply = await served
        await worker.disconnect(code=1000)
        return refused, worker_saw_nothing, reply

    refused, worker_saw_nothing, reply = run(scenario)
    for response in refused:
        assert response.status == 400
        assert response.headers["content-type"].startswith("application/json")
        error = response.json()["error"]
        assert (error["type"], error["code"], error["param"]) == (
            "invalid_request_error",
            "context_length_exceeded",
            "messages",
        )
        assert "8192" in error["message"]
    assert worker_saw_nothing
    assert reply.status == 200 and reply.json()["choices"][0]["message"]["content"] == "Hello"
    assert Job.objects.count() == 1 and Hold.objects.count() == 1  # the served request's only
    worker = Worker.objects.get()
    assert (worker.jobs_failed, worker.jobs_aborted, worker.faults_in_window, worker.paused_until) == (0, 0, 0, None)


def test_max_tokens_counts_against_the_window_and_unset_takes_what_is_left(platform, operator, customer):
    smollm2 = LlmModel.objects.get(id=SMOLLM2)
    messages = [{"role": "user", "content": "hello " * 7500}]

    async def scenario():
        worker = WorkerSocket(operator.key)
        await worker.hello()
        too_much = await chat(customer.key, messages=messages, max_tokens=1000).finish()
        served = asyncio.ensure_future(chat(customer.key, messages=messages).finish())
        job = await worker.job()
        await worker.done(job["job_id"], completion_tokens=0)
        await served
        await worker.disconnect(code=1000)
        return too_much, job

    too_much, job_frame = run(scenario)
    assert too_much.status == 400 and too_much.json()["error"]["code"] == "context_length_exceeded"
    prompt = model_counter(smollm2).prompt(job_frame["request"])
    assert 7500 <= prompt < 8192 - 1
    # No max_tokens: the job may generate what the window holds after the prompt, and is held for that.
    assert job_frame["request"]["max_tokens"] == Job.objects.get().max_tokens == 8192 - prompt
    assert Job.objects.get().prompt_tokens_estimate == prompt
