"""Legacy completions and log probabilities end to end: the `openai` SDK against daphne + Celery + a
real `sogni-worker` running SmolLM2 on llama.cpp. Bodies and chunks are validated against OpenAI's
spec (../shared/openai/openapi.json) and each completion is charged exactly usage × the price."""

import openai
import pytest

from tests.e2e.charging_checks import assert_charged
from tests.support.openai_schema import errors, validate
from tests.support.workers import SMOLLM2

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

PROMPT = "The capital of France is"


@pytest.fixture
def client(live_platform, user) -> openai.OpenAI:
    return openai.OpenAI(base_url=live_platform.url + "/v1", api_key=user.key, max_retries=0, timeout=180)


def chunk_problems(chunk: dict) -> list[str]:
    """The spec's problems with a legacy stream chunk, less a null finish_reason before the last chunk
    (OpenAI's own streams send one there; the spec requires a string on every chunk)."""
    finishing = bool(chunk["choices"]) and chunk["choices"][0]["finish_reason"] is not None
    return [p for p in errors("CreateCompletionResponse", chunk) if finishing or not p.startswith("choices/0/finish")]


def assert_entries(entries: list[dict], *, top: int) -> None:
    for entry in entries:
        assert entry["logprob"] <= 0 and bytes(entry["bytes"]).decode("utf-8", "replace") == entry["token"]
        assert len(entry["top_logprobs"]) == top
        assert entry["top_logprobs"][0]["logprob"] >= entry["top_logprobs"][-1]["logprob"]
        assert entry["logprob"] <= entry["top_logprobs"][0]["logprob"] + 1e-6


def test_legacy_completions_plain_and_streamed(workers, client):
    workers.start("smol")
    prices = client.models.retrieve(SMOLLM2).model_extra["pricing"]
    capabilities = client.models.retrieve(SMOLLM2).model_extra["capabilities"]
    assert capabilities["completions"] is True and capabilities["logprobs"] is True

    reply = client.completions.create(model=SMOLLM2, prompt=PROMPT, max_tokens=4, temperature=0)
    body = reply.model_dump(exclude_unset=True)
    validate("CreateCompletionResponse", body)
    assert reply.object == "text_completion" and reply.id.startswith("cmpl-")
    assert "Paris" in reply.choices[0].text
    assert 0 < reply.usage.completion_tokens <= 4
    assert_charged(completion_id=reply.id, usage=body["usage"], pricing=prices)

    stream = client.completions.create(
        model=SMOLLM2, prompt=[PROMPT], max_tokens=4, temperature=0, stream=True, stream_options={"include_usage": True}
    )
    chunks = [chunk.model_dump(exclude_unset=True) for chunk in stream]
    for chunk in chunks:
        assert not chunk_problems(chunk), chunk_problems(chunk)
    text = "".join(c["choices"][0]["text"] for c in chunks if c["choices"])
    assert text == reply.choices[0].text  # temperature 0: the same tokens
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == reply.usage.completion_tokens
    assert_charged(completion_id=chunks[0]["id"], usage=chunks[-1]["usage"], pricing=prices)

    with pytest.raises(openai.BadRequestError) as caught:
        client.completions.create(model=SMOLLM2, prompt=PROMPT, suffix="!")
    assert caught.value.param == "suffix"

    # logprobs=2 on legacy completions: each token with its two best alternatives.
    scored = client.completions.create(model=SMOLLM2, prompt=PROMPT, max_tokens=3, temperature=0, logprobs=2)
    validate("CreateCompletionResponse", scored.model_dump(exclude_unset=True))
    logprobs = scored.choices[0].logprobs
    assert "".join(logprobs.tokens) == scored.choices[0].text
    assert len(logprobs.token_logprobs) == len(logprobs.top_logprobs) == len(logprobs.tokens)
    assert all(len(top) <= 2 for top in logprobs.top_logprobs)


def test_chat_logprobs_on_the_embedded_model_streamed_and_not(workers, client):
    workers.start("smol")
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    args = {"model": SMOLLM2, "messages": messages, "max_tokens": 4, "temperature": 0}

    reply = client.chat.completions.create(logprobs=True, top_logprobs=2, **args)
    validate("CreateChatCompletionResponse", reply.model_dump(exclude_unset=True))
    content = reply.choices[0].logprobs.content
    assert content and "".join(entry.token for entry in content) == reply.choices[0].message.content
    assert_entries([entry.model_dump() for entry in content], top=2)

    stream = client.chat.completions.create(logprobs=True, top_logprobs=2, stream=True, **args)
    chunks = [chunk.model_dump(exclude_unset=True) for chunk in stream]
    streamed = []
    for chunk in chunks:
        validate("CreateChatCompletionStreamResponse", chunk)
        if chunk["choices"] and chunk["choices"][0].get("logprobs"):
            streamed += chunk["choices"][0]["logprobs"]["content"]
    assert_entries(streamed, top=2)
    assert [e["token"] for e in streamed] == [e.token for e in content]  # temperature 0: the same tokens
