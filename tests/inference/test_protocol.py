"""Worker frame validation (pure)."""

import json

import pytest

from inference.protocol import (
    CLOSE_PROTOCOL_VIOLATION,
    CLOSE_UNSUPPORTED_PROTOCOL,
    ProtocolViolation,
    RateLimiter,
    parse_frame,
)

LIMIT = 64 * 1024


def parse(frame) -> dict:
    return parse_frame(json.dumps(frame), max_bytes=LIMIT)


def test_a_full_delta_is_accepted_and_normalised():
    frame = parse(
        {
            "type": "delta",
            "job_id": "j1",
            "content": "Hel",
            "tokens": 1,
            "tool_calls": [{"index": 0, "id": "call_1", "name": "f", "arguments": "{"}],
            "extra": "ignored",
        }
    )
    assert frame == {
        "type": "delta",
        "job_id": "j1",
        "content": "Hel",
        "reasoning": "",
        "tool_calls": [{"index": 0, "id": "call_1", "name": "f", "arguments": "{"}],
        "tokens": 1,
        "logprobs": [],
    }


def test_a_deltas_frame_is_checked_delta_by_delta():
    frame = parse({"type": "deltas", "deltas": [{"type": "delta", "job_id": "a", "content": "x", "tokens": 1},
                                                 {"job_id": "b", "reasoning": "y"}]})  # fmt: skip
    assert frame == {
        "type": "deltas",
        "deltas": [
            {
                "type": "delta",
                "job_id": "a",
                "content": "x",
                "reasoning": "",
                "tool_calls": [],
                "tokens": 1,
                "logprobs": [],
            },
            {
                "type": "delta",
                "job_id": "b",
                "content": "",
                "reasoning": "y",
                "tool_calls": [],
                "tokens": 0,
                "logprobs": [],
            },
        ],
    }


def test_hello_keeps_the_job_features_it_knows():
    hello = {"type": "hello", "protocol": 1, "worker_name": "w", "models": ["m"], "slots": 1}
    assert parse(hello)["features"] == []
    assert parse({**hello, "features": ["prompt", "teleport", "logprobs"]})["features"] == ["logprobs", "prompt"]
    for features in ("prompt", [1], [""], ["x"] * 17):
        with pytest.raises(ProtocolViolation):
            parse({**hello, "features": features})


def test_delta_logprobs_are_checked_entry_by_entry():
    top = {"token": "Hi", "logprob": -0.5, "bytes": [72, 105]}
    frame = parse({"type": "delta", "job_id": "j", "content": "Hi", "logprobs": [{**top, "top_logprobs": [top]}]})
    assert frame["logprobs"] == [{**top, "top_logprobs": [top]}]
    for entry in (
        {**top, "logprob": 0.5},
        {**top, "bytes": [256]},
        {**top, "token": 3},
        {**top, "top_logprobs": [top] * 21},
    ):
        with pytest.raises(ProtocolViolation):
            parse({"type": "delta", "job_id": "j", "logprobs": [entry]})


def test_done_usage_defaults_to_zero():
    frame = parse({"type": "done", "job_id": "j", "finish_reason": "length"})
    assert (frame["prompt_tokens"], frame["completion_tokens"], frame["reasoning_tokens"]) == (0, 0, 0)


def test_a_future_protocol_is_4002_not_4003():
    with pytest.raises(ProtocolViolation) as caught:
        parse({"type": "hello", "protocol": 2, "worker_name": "w", "models": ["m"], "slots": 1})
    assert caught.value.code == CLOSE_UNSUPPORTED_PROTOCOL


@pytest.mark.parametrize(
    "text",
    [
        None,  # a binary frame
        "",
        "{",
        "null",
        '"delta"',
        '{"type": 5}',
        '{"type": "delta", "job_id": "j", "tokens": true}',
        '{"type": "delta", "job_id": "j", "tokens": 1.5}',
        '{"type": "delta", "job_id": "j", "tool_calls": {"index": 0}}',
        '{"type": "error", "job_id": "j", "code": "engine_error", "retryable": "yes"}',
        '{"type": "heartbeat", "running": "j1"}',
        '{"type": "deltas", "deltas": []}',
        '{"type": "deltas", "deltas": {"job_id": "j"}}',
        '{"type": "deltas", "deltas": ["j"]}',
        '{"type": "deltas", "deltas": [{"job_id": "j", "tokens": 1}, {"job_id": "", "tokens": 1}]}',
        '{"type": "hello", "protocol": true, "worker_name": "w", "models": ["m"], "slots": 1}',
    ],
)
def test_malformed_frames_are_violations(text):
    with pytest.raises(ProtocolViolation) as caught:
        parse_frame(text, max_bytes=LIMIT)
    assert caught.value.code in (CLOSE_PROTOCOL_VIOLATION, CLOSE_UNSUPPORTED_PROTOCOL)


def test_size_is_counted_in_utf8_bytes():
    text = json.dumps({"type": "delta", "job_id": "j", "content": "é" * 40_000}, ensure_ascii=False)
    assert len(text) < LIMIT < len(text.encode())
    with pytest.raises(ProtocolViolation, match="larger than"):
        parse_frame(text, max_bytes=LIMIT)


def test_rate_limiter_allows_a_burst_then_refills():
    limiter = RateLimiter(10, now=0.0)
    assert all(limiter.allow(0.0) for _ in range(10))
    assert not limiter.allow(0.0)
    assert limiter.allow(0.1)  # one frame's worth refilled
    assert not limiter.allow(0.1)
