"""POST /v1/completions (legacy completions) and log probabilities, over the real socket consumer: the
raw prompt travels as a `prompt` job to workers that announced the feature, counted with the model's
tokenizer, and billed on the same path as chat."""

import asyncio

from inference.counting import model_counter
from inference.models import Job, LlmModel
from tests.inference.platform import SMOLLM2, HttpCall, WorkerSocket, run, smollm2_count
from tests.support.openai_schema import errors, validate

PROMPT = "Once upon a time"
FEATURES = ["prompt", "logprobs"]


def complete(key, **body):
    return HttpCall("/v1/completions", key=key, body={"model": SMOLLM2, "prompt": PROMPT, **body})


def chat(key, **body):
    messages = [{"role": "user", "content": "Say hello"}]
    return HttpCall("/v1/chat/completions", key=key, body={"model": SMOLLM2, "messages": messages, **body})


def stream_chunk_problems(chunk: dict) -> list[str]:
    """The spec's problems with a legacy stream chunk, less the one OpenAI's own streams have: a null
    finish_reason before the last chunk (the spec requires a string on every chunk)."""
    finishing = bool(chunk["choices"]) and chunk["choices"][0]["finish_reason"] is not None
    return [p for p in errors("CreateCompletionResponse", chunk) if finishing or not p.startswith("choices/0/finish")]


def entry(token: str, logprob: float, top: list[tuple[str, float]]) -> dict:
    return {
        "token": token,
        "logprob": logprob,
        "bytes": list(token.encode()),
        "top_logprobs": [{"token": t, "logprob": lp, "bytes": list(t.encode())} for t, lp in top],
    }


def test_a_completion_runs_as_a_prompt_job_and_is_billed_on_the_platforms_count(platform, operator, customer):
    async def scenario():
        worker = WorkerSocket(operator.key)
        await worker.hello(features=FEATURES)
        pending = asyncio.ensure_future(complete(customer.key, max_tokens=5, temperature=0, stop="\n").finish())
        job = await worker.job()
        await worker.delta(job["job_id"], " there was")
        await worker.done(job["job_id"], completion_tokens=2)
        reply = await pending
        await worker.disconnect(code=1000)
        return job, reply

    job_frame, reply = run(scenario)
    assert reply.status == 200
    body = reply.json()
    validate("CreateCompletionResponse", body)
    assert body["object"] == "text_completion" and body["id"].startswith("cmpl-")
    assert body["choices"][0]["text"] == " there was"
    assert job_frame["request"]["prompt"] == PROMPT and "messages" not in job_frame["request"]
    assert job_frame["request"]["stop"] == ["\n"] and job_frame["request"]["temperature"] == 0
    prompt_tokens = model_counter(LlmModel.objects.get(id=SMOLLM2)).count(PROMPT)  # no chat template
    assert body["usage"]["prompt_tokens"] == prompt_tokens
    assert body["usage"]["completion_tokens"] == smollm2_count(" there was")
    job = Job.objects.get()
    assert (job.public_id, job.status, job.max_tokens) == (body["id"], Job.Status.COMPLETED, 5)


def test_a_streamed_completion_with_usage_and_logprobs(platform, operator, customer):
    async def scenario():
        worker = WorkerSocket(operator.key)
        await worker.hello(features=FEATURES)
        call = complete(customer.key, stream=True, stream_options={"include_usage": True}, logprobs=1)
        pending = asyncio.ensure_future(call.finish())
        job = await worker.job()
        await worker.delta(job["job_id"], " there", logprobs=[entry(" there", -0.5, [(" there", -0.5)])])
        await worker.delta(job["job_id"], " was", logprobs=[entry(" was", -0.25, [(" was", -0.25)])])
        await worker.done(job["job_id"], completion_tokens=2)
        reply = await pending
        await worker.disconnect(code=1000)
        return job, reply

    job_frame, reply = run(scenario)
    assert reply.status == 200
    events = reply.events()
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    for chunk in chunks:
        assert not stream_chunk_problems(chunk), stream_chunk_problems(chunk)
    assert (job_frame["request"]["logprobs"], job_frame["request"]["top_logprobs"]) == (True, 1)
    texts = [c["choices"][0] for c in chunks if c["choices"] and c["choices"][0]["text"]]
    assert [c["text"] for c in texts] == [" there", " was"]
    assert texts[1]["logprobs"] == {
        "tokens": [" was"],
        "token_logprobs": [-0.25],
        "top_logprobs": [{" was": -0.25}],
        "text_offset": [len(" there")],
    }
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == smollm2_count(" there was")


def test_chat_logprobs_are_relayed_streamed_and_not(platform, operator, customer):
    lp = [entry("Hello", -0.125, [("Hello", -0.125), ("Hi", -2.5)])]

    async def scenario():
        worker = WorkerSocket(operator.key)
        await worker.hello(features=FEATURES)
        replies = []
        for stream in (False, True):
            pending = asyncio.ensure_future(chat(customer.key, logprobs=True, top_logprobs=2, stream=stream).finish())
            job = await worker.job()
            assert (job["request"]["logprobs"], job["request"]["top_logprobs"]) == (True, 2)
            await worker.delta(job["job_id"], "Hello", logprobs=lp)
            await worker.done(job["job_id"], completion_tokens=1)
            replies.append(await pending)
        await worker.disconnect(code=1000)
        return replies

    plain, streamed = run(scenario)
    body = plain.json()
    validate("CreateChatCompletionResponse", body)
    assert body["choices"][0]["logprobs"] == {"content": lp, "refusal": None}
    chunks = streamed.events()[:-1]
    for chunk in chunks:
        validate("CreateChatCompletionStreamResponse", chunk)
    carrying = [c["choices"][0]["logprobs"] for c in chunks if c["choices"][0]["logprobs"]]
    assert carrying == [{"content": lp, "refusal": None}]


def test_what_no_online_worker_can_serve_is_a_400_naming_the_field(platform, operator, customer):
    async def scenario():
        worker = WorkerSocket(operator.key)
        await worker.hello()  # announces no features
        refused = [
            await complete(customer.key).finish(),
            await chat(customer.key, logprobs=True).finish(),
            await chat(customer.key, logprobs=True, stream=True).finish(),
        ]
        nothing = await worker.nothing()
        await worker.disconnect(code=1000)
        return refused, nothing

    refused, nothing = run(scenario)
    assert [(r.status, r.json()["error"]["param"]) for r in refused] == [
        (400, "prompt"),
        (400, "logprobs"),
        (400, "logprobs"),
    ]
    assert nothing and not Job.objects.exists()


def test_a_prompt_job_goes_only_to_a_worker_that_announced_the_feature(platform, operator, customer):
    async def scenario():
        plain = WorkerSocket(operator.key)
        await plain.hello(name="chat-only", slots=4)
        capable = WorkerSocket(operator.key)
        await capable.hello(name="completions", features=["prompt"], slots=1)
        pending = asyncio.ensure_future(complete(customer.key).finish())
        job = await capable.job()
        chat_only_saw_nothing = await plain.nothing()
        await capable.delta(job["job_id"], " ok")
        await capable.done(job["job_id"], completion_tokens=1)
        reply = await pending
        await plain.disconnect(code=1000)
        await capable.disconnect(code=1000)
        return reply, chat_only_saw_nothing

    reply, chat_only_saw_nothing = run(scenario)
    assert reply.status == 200 and reply.json()["choices"][0]["text"] == " ok"
    assert chat_only_saw_nothing


def test_refused_fields_name_themselves(platform, customer):
    cases = [
        ({"suffix": "end"}, "suffix"),
        ({"echo": True}, "echo"),
        ({"prompt": ["a", "b"]}, "prompt"),
        ({"prompt": [[1, 2, 3]]}, "prompt[0]"),
        ({"prompt": ""}, "prompt"),
        ({"best_of": 2}, "best_of"),
        ({"logprobs": 6}, "logprobs"),
    ]
    for body, param in cases:
        reply = run(complete(customer.key, **body).finish)
        assert reply.status == 400, body
        validate("ErrorResponse", reply.json())
        assert reply.json()["error"]["param"] == param, body
