"""Replies and stream chunks: OpenAI's exact shapes, checked against the spec and the openai SDK's own types."""

import json
import re

import pytest
from openai.lib.streaming.chat import ChatCompletionStreamState
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from inference.openai.responses import (
    SSE_DONE,
    SSE_KEEPALIVE,
    ChatCompletionAccumulator,
    completion_id,
    sse_error,
    sse_event,
    usage_payload,
)
from sogni_platform.exceptions import ApiError, InsufficientBalance, ServiceUnavailable
from tests.support.openai_schema import validate

COST = {"token_type": "spark", "amount": "0.001620", "usd": "0.0000081"}  # usage.cost, exact decimal strings
USAGE = usage_payload(prompt_tokens=12, completion_tokens=6, reasoning_tokens=2, cost=COST)

PLAIN = [{"content": "Hel", "tokens": 1}, {"content": "lo!", "tokens": 1}]
REASONING = [{"reasoning": "Think", "tokens": 1}, {"reasoning": "ing.", "tokens": 1}, {"content": "Hi", "tokens": 1}]
TOOLS = [
    {"tool_calls": [{"index": 0, "id": "call_a", "name": "get_weather", "arguments": '{"ci'}], "tokens": 2},
    {"tool_calls": [{"index": 0, "arguments": 'ty":"Oslo"}'}], "tokens": 2},
    {"tool_calls": [{"index": 1, "id": "call_b", "name": "get_time", "arguments": ""}], "tokens": 1},
    {"tool_calls": [{"index": 1, "arguments": "{}"}], "tokens": 1},
]
SCENARIOS = {
    "plain": (PLAIN, "stop"),
    "reasoning": (REASONING, "stop"),
    "tool-calls": (TOOLS, "tool_calls"),
    "length": (PLAIN, "length"),
    "content-then-tool": ([{"content": "Let me check."}, *TOOLS[:2]], "tool_calls"),
}


def stream(frames, finish_reason, *, include_usage=True, **kwargs):
    accumulator = ChatCompletionAccumulator(model="smollm2-135m-instruct-q4_1", include_usage=include_usage, **kwargs)
    chunks = []
    for frame in frames:
        chunks += accumulator.feed(frame)
    chunks += accumulator.finish(finish_reason=finish_reason, usage=USAGE)
    return accumulator, chunks


@pytest.mark.parametrize("name", SCENARIOS)
@pytest.mark.parametrize("include_usage", [True, False])
def test_every_chunk_and_reply_conforms(name, include_usage):
    frames, finish_reason = SCENARIOS[name]
    accumulator, chunks = stream(frames, finish_reason, include_usage=include_usage)
    for chunk in chunks:
        validate("CreateChatCompletionStreamResponse", chunk)
        ChatCompletionChunk.model_validate(chunk)
        assert chunk["id"] == accumulator.id and chunk["object"] == "chat.completion.chunk"
        assert ("usage" in chunk) is include_usage
    completion = accumulator.completion(finish_reason=finish_reason, usage=USAGE)
    validate("CreateChatCompletionResponse", completion)
    ChatCompletion.model_validate(completion)


def test_stream_order_role_first_then_deltas_finish_and_usage():
    _, chunks = stream(PLAIN, "stop")
    deltas = [c["choices"][0]["delta"] if c["choices"] else None for c in chunks]
    assert deltas == [{"role": "assistant", "content": ""}, {"content": "Hel"}, {"content": "lo!"}, {}, None]
    assert [c["choices"][0]["finish_reason"] for c in chunks[:-1]] == [None, None, None, "stop"]
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"] == USAGE
    assert all(c["usage"] is None for c in chunks[:-1])


def test_no_usage_chunk_unless_asked():
    _, chunks = stream(PLAIN, "stop", include_usage=False)
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert all("usage" not in c for c in chunks)


def test_tool_call_fragments_carry_index_and_id_name_only_first():
    _, chunks = stream(TOOLS, "tool_calls")
    calls = [c["choices"][0]["delta"]["tool_calls"][0] for c in chunks[:-1] if "tool_calls" in c["choices"][0]["delta"]]
    assert calls == [
        {"index": 0, "id": "call_a", "type": "function", "function": {"name": "get_weather", "arguments": '{"ci'}},
        {"index": 0, "function": {"arguments": 'ty":"Oslo"}'}},
        {"index": 1, "id": "call_b", "type": "function", "function": {"name": "get_time", "arguments": ""}},
        {"index": 1, "function": {"arguments": "{}"}},
    ]


def test_tool_call_reply_has_null_content_and_tool_calls():
    accumulator, chunks = stream(TOOLS, "stop")
    completion = accumulator.completion(finish_reason="stop", usage=USAGE)
    choice = completion["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] is None
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": None}
    assert choice["message"]["tool_calls"] == [
        {"id": "call_a", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'}},
        {"id": "call_b", "type": "function", "function": {"name": "get_time", "arguments": "{}"}},
    ]
    assert "reasoning_content" not in choice["message"]


def test_a_first_fragment_without_id_gets_one():
    accumulator, chunks = stream([{"tool_calls": [{"index": 0, "name": "f", "arguments": "{}"}]}], "tool_calls")
    first = chunks[1]["choices"][0]["delta"]["tool_calls"][0]
    assert re.fullmatch(r"call_[A-Za-z0-9]{24}", first["id"])
    assert accumulator.message()["tool_calls"][0]["id"] == first["id"]


def test_reasoning_goes_to_reasoning_content():
    accumulator, chunks = stream(REASONING, "stop")
    assert [c["choices"][0]["delta"] for c in chunks[1:3]] == [
        {"reasoning_content": "Think"},
        {"reasoning_content": "ing."},
    ]
    message = accumulator.completion(finish_reason="stop")["choices"][0]["message"]
    assert (message["content"], message["reasoning_content"]) == ("Hi", "Thinking.")


def test_think_tags_in_content_are_split_when_asked():
    frames = [{"content": piece, "tokens": 1} for piece in ["<th", "ink>\nWe", "igh.</", "think>\n\nFour", "."]]
    accumulator, chunks = stream(frames, "stop", split_think=True)
    streamed = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    thought = "".join(c["choices"][0]["delta"].get("reasoning_content", "") for c in chunks if c["choices"])
    assert (streamed, thought) == ("Four.", "Weigh.")
    message = accumulator.completion(finish_reason="stop")["choices"][0]["message"]
    assert (message["content"], message["reasoning_content"]) == ("Four.", "Weigh.")
    assert accumulator.tokens == 5


def test_unclosed_think_is_flushed_as_reasoning_at_finish():
    accumulator, chunks = stream(
        [{"content": "<think>still thin"}, {"content": "king </thi"}], "length", split_think=True
    )
    assert chunks[-3]["choices"][0]["delta"] == {"reasoning_content": "</thi"}
    message = accumulator.completion(finish_reason="length")["choices"][0]["message"]
    assert (message["content"], message["reasoning_content"]) == ("", "still thinking </thi")


def test_usage_and_cost():
    accumulator, _ = stream(PLAIN, "stop")
    usage = accumulator.completion(finish_reason="stop", usage=USAGE)["usage"]
    assert usage == {
        "prompt_tokens": 12,
        "completion_tokens": 6,
        "total_tokens": 18,
        "completion_tokens_details": {"reasoning_tokens": 2},
        "cost": {"token_type": "spark", "amount": "0.001620", "usd": "0.0000081"},
    }


def test_unknown_finish_reason_from_a_worker_becomes_stop():
    accumulator, chunks = stream(PLAIN, "exploded")
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"


def test_sdk_stream_accumulation_matches_the_non_streaming_reply():
    for name, (frames, finish_reason) in SCENARIOS.items():
        accumulator, chunks = stream(frames, finish_reason)
        state = ChatCompletionStreamState()
        for chunk in chunks:
            state.handle_chunk(ChatCompletionChunk.model_validate(chunk))
        final = state.current_completion_snapshot  # get_final_completion() raises on "length"
        reply = accumulator.completion(finish_reason=finish_reason, usage=USAGE)
        message = reply["choices"][0]["message"]
        assert final.choices[0].message.content == message["content"], name
        assert final.choices[0].finish_reason == reply["choices"][0]["finish_reason"], name
        sdk_calls = [(c.id, c.function.name, c.function.arguments) for c in final.choices[0].message.tool_calls or []]
        our_calls = [
            (c["id"], c["function"]["name"], c["function"]["arguments"]) for c in message.get("tool_calls", [])
        ]
        assert sdk_calls == our_calls, name
        assert final.usage.total_tokens == 18


def test_ids_are_chatcmpl_and_unique():
    ids = {completion_id() for _ in range(1000)}
    assert len(ids) == 1000
    assert all(re.fullmatch(r"chatcmpl-[A-Za-z0-9]{29}", i) for i in ids)
    first, second = ChatCompletionAccumulator(model="m"), ChatCompletionAccumulator(model="m")
    assert first.system_fingerprint == second.system_fingerprint and first.system_fingerprint.startswith("fp_")


def test_sse_framing():
    chunk = stream([{"content": "line\nbreak ünïcode"}], "stop")[1][1]
    event = sse_event(chunk)
    assert event.startswith(b"data: {") and event.endswith(b"}\n\n") and event.count(b"\n") == 2
    assert b": " not in event[6:] and b", " not in event
    assert json.loads(event[6:]) == chunk
    assert "ünïcode".encode() in event
    assert SSE_DONE == b"data: [DONE]\n\n"
    assert SSE_KEEPALIVE == b": keep-alive\n\n"


@pytest.mark.parametrize(
    "error",
    [
        ApiError("The worker failed.", code="engine_error", type="server_error"),
        InsufficientBalance("Not enough Spark."),
        ServiceUnavailable("No worker serves this model.", code="no_worker_available"),
        ApiError("Bad.", param="messages[0].role", code="invalid_value"),
    ],
)
def test_sse_error_is_an_openai_error_body(error):
    event = sse_error(error)
    assert event.startswith(b'data: {"error":') and event.endswith(b"\n\n")
    body = json.loads(event[6:])
    validate("ErrorResponse", body)
    assert body["error"]["message"] == error.message and body["error"]["code"] == error.code
