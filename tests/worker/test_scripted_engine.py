"""The scripted engine: deterministic, paced, bounded by max_tokens, cancellable; tools and JSON on request."""

import json
import threading
import time

import jsonschema
import pytest

from sogni_worker.engines import EngineError, Finish
from sogni_worker.engines.scripted_engine import ScriptedEngine


def run(engine, request, cancel=None):
    items = list(engine.generate(request, cancel or threading.Event()))
    assert isinstance(items[-1], Finish)
    assert sum(d.tokens for d in items[:-1]) == items[-1].completion_tokens
    return items[:-1], items[-1]


def user(text, **extra):
    return {"messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": text}], **extra}


def test_same_request_same_reply_carrying_its_marker():
    engine = ScriptedEngine(rate=0, tokens=5)
    first, finish = run(engine, user("walrus one", max_tokens=50))
    second, _ = run(engine, user("walrus one", max_tokens=50))
    assert [d.content for d in first] == [d.content for d in second] == ["walrus", " tok1", " tok2", " tok3", " tok4"]
    assert finish.finish_reason == "stop" and finish.completion_tokens == 5 and finish.prompt_tokens > 0
    other, _ = run(engine, user("otter", max_tokens=50))
    assert other[0].content == "otter"


def test_max_tokens_cuts_the_reply_with_length():
    deltas, finish = run(ScriptedEngine(rate=0, tokens=100), user("x", max_tokens=3))
    assert len(deltas) == 3 and finish.finish_reason == "length" and finish.completion_tokens == 3


def test_tokens_are_paced_at_the_rate():
    started = time.monotonic()
    run(ScriptedEngine(rate=20, tokens=10), user("pace"))
    # Token n leaves at start + n/rate: the tenth no earlier than 0.45 s.
    assert time.monotonic() - started >= 0.45


def test_cancel_stops_between_tokens():
    cancel = threading.Event()
    generation = ScriptedEngine(rate=50, tokens=1000).generate(user("stop me", max_tokens=1000), cancel)
    next(generation)
    cancel.set()
    with pytest.raises(EngineError) as failure:
        list(generation)
    assert failure.value.code == "cancelled"


def test_tool_call_with_schema_shaped_arguments():
    tool = {"type": "function", "function": {"name": "book", "parameters": {"type": "object", "properties": {
        "city": {"type": "string"}, "nights": {"type": "integer"}, "smoking": {"type": "boolean"}}}}}  # fmt: skip
    deltas, finish = run(ScriptedEngine(rate=0), user("Rome trip", tools=[tool], tool_choice="required", max_tokens=99))
    fragments = [f for d in deltas for f in d.tool_calls]
    assert fragments[0]["name"] == "book" and fragments[0]["id"]
    assert json.loads("".join(f.get("arguments", "") for f in fragments)) == {
        "city": "Rome",
        "nights": 1,
        "smoking": True,
    }
    assert finish.finish_reason == "tool_calls"
    none_deltas, _ = run(ScriptedEngine(rate=0), user("Rome trip", tools=[tool], tool_choice="none"))
    assert not any(d.tool_calls for d in none_deltas)


def test_json_schema_reply_validates_and_thinking_comes_as_reasoning():
    schema = {"type": "object", "properties": {"tags": {"type": "array", "items": {"type": "string"}}}}
    request = user("label", max_tokens=99, chat_template_kwargs={"enable_thinking": True},
                   response_format={"type": "json_schema", "json_schema": {"name": "t", "schema": schema}})  # fmt: skip
    deltas, finish = run(ScriptedEngine(rate=0), request)
    assert "".join(d.reasoning for d in deltas) == "think0 think1 " and finish.reasoning_tokens == 2
    jsonschema.validate(json.loads("".join(d.content for d in deltas)), schema)
