"""The Responses API's wire shapes: requests translated into the chat request the platform runs, and
the chat path's chunks written as output items and events, checked against OpenAI's spec
(CreateResponse, Response, ResponseStreamEvent) and the openai SDK's own stream accumulator."""

import json

import pytest
from openai import omit
from openai._models import construct_type
from openai.lib.streaming.responses._responses import ResponseStreamState
from openai.types.responses import Response, ResponseStreamEvent

from inference.openai.responses import ChatCompletionAccumulator, usage_payload
from inference.openai.responses_input import parse_responses_request
from inference.openai.responses_output import ResponseWriter, response_usage, sse_response_event
from sogni_platform.exceptions import ApiError, ServiceUnavailable
from tests.support.openai_schema import validate

MODEL = "smollm2-135m-instruct-q4_1"
OSLO = {"name": "get_weather", "arguments": '{"city":"Oslo"}'}
COST = {"token_type": "spark", "amount": "0.001620", "usd": "0.0000081"}
USAGE = response_usage(usage_payload(prompt_tokens=12, completion_tokens=6, reasoning_tokens=2, cost=COST))
WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "Weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    "strict": True,
}

PLAIN = [{"content": "Hel"}, {"content": "lo!"}]
THINKING = [{"content": "<think>Hmm, "}, {"content": "a greeting.</think>"}, {"content": "Hi"}]
CALLS = [
    {"tool_calls": [{"index": 0, "id": "call_a", "name": "get_weather", "arguments": '{"ci'}]},
    {"tool_calls": [{"index": 0, "arguments": 'ty":"Oslo"}'}]},
    {"tool_calls": [{"index": 1, "id": "call_b", "name": "get_time", "arguments": "{}"}]},
]
SCENARIOS = {
    "plain": (PLAIN, "stop"),
    "reasoning": (THINKING, "stop"),
    "tool-calls": (CALLS, "tool_calls"),
    "text-then-call": ([{"content": "Let me check."}, *CALLS[:2]], "tool_calls"),
    "length": (PLAIN, "length"),
}


def written(frames, finish_reason, *, echo=None):
    """Every event of one response, and the final response, as the view writes them."""
    accumulator = ChatCompletionAccumulator(model=MODEL, split_think=True)
    writer = ResponseWriter(
        id="resp_test", model=MODEL, echo=echo or {}, store=True, previous_response_id=None, max_output_tokens=None
    )
    events = writer.start()
    for frame in frames:
        events += writer.feed(accumulator.feed({**frame, "tokens": 1}))
    closing = accumulator.finish(finish_reason=finish_reason)
    events += writer.feed(closing)
    more, response = writer.finish(finish_reason=closing[-1]["choices"][0]["finish_reason"], usage=USAGE)
    return writer, events + more, response


@pytest.mark.parametrize("name", SCENARIOS)
def test_every_event_and_response_conforms_and_the_sdk_accumulates_the_same_response(name):
    _, events, response = written(*SCENARIOS[name])
    for event in events:
        validate("ResponseStreamEvent", event)
    assert [event["sequence_number"] for event in events] == list(range(len(events)))
    validate("Response", response)
    Response.model_validate(response)
    state = ResponseStreamState(input_tools=omit, text_format=omit)
    for event in events:
        state.handle_event(construct_type(type_=ResponseStreamEvent, value=event))
    final = events[-1]["response"]
    assert final == response
    # The SDK keeps a completed response; an incomplete one stays its running snapshot (item statuses
    # as they were added).
    snapshot = state._completed_response or state._ResponseStreamState__current_snapshot
    accumulated = [item.model_dump(exclude_none=True, exclude={"status"}) for item in snapshot.output]
    assert accumulated == [{k: v for k, v in item.items() if k != "status"} for item in response["output"]]


def test_plain_text_has_openais_event_sequence_and_usage_with_cost():
    _, events, response = written(PLAIN, "stop")
    assert [event["type"] for event in events] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert events[0]["response"]["status"] == "in_progress" and "usage" not in events[0]["response"]
    (message,) = response["output"]
    assert (message["type"], message["status"], message["content"][0]["text"]) == ("message", "completed", "Hello!")
    assert response["status"] == "completed" and response["completed_at"] >= response["created_at"]
    assert response["usage"] == {
        "input_tokens": 12,
        "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
        "output_tokens": 6,
        "output_tokens_details": {"reasoning_tokens": 2},
        "total_tokens": 18,
        "cost": {"token_type": "spark", "amount": "0.001620", "usd": "0.0000081"},
    }
    frame = sse_response_event(events[4])
    assert frame.startswith(b"event: response.output_text.delta\ndata: {") and frame.endswith(b"\n\n")


def test_reasoning_becomes_a_summary_item_before_the_message():
    _, _, response = written(THINKING, "stop")
    reasoning, message = response["output"]
    assert reasoning["type"] == "reasoning" and reasoning["summary"] == [
        {"type": "summary_text", "text": "Hmm, a greeting."}
    ]
    assert message["content"][0]["text"] == "Hi"


def test_tool_calls_become_function_call_items_and_the_stored_assistant_message():
    writer, events, response = written(CALLS, "tool_calls")
    calls = response["output"]
    assert [(c["type"], c["call_id"], c["name"], c["arguments"]) for c in calls] == [
        ("function_call", "call_a", "get_weather", '{"city":"Oslo"}'),
        ("function_call", "call_b", "get_time", "{}"),
    ]
    done = [e for e in events if e["type"] == "response.function_call_arguments.done"]
    assert [(e["name"], e["arguments"], e["output_index"]) for e in done] == [
        ("get_weather", '{"city":"Oslo"}', 0),
        ("get_time", "{}", 1),
    ]
    assert writer.assistant_message() == {
        "role": "assistant",
        "content": "",
        "tool_calls": [
            {"id": "call_a", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'}},
            {"id": "call_b", "type": "function", "function": {"name": "get_time", "arguments": "{}"}},
        ],
    }


def test_max_output_tokens_reached_is_an_incomplete_response():
    _, events, response = written(PLAIN, "length")
    assert events[-1]["type"] == "response.incomplete"
    assert response["status"] == "incomplete" and response["incomplete_details"] == {"reason": "max_output_tokens"}
    assert response["output"][0]["status"] == "incomplete"


def test_a_failure_is_an_error_event_with_our_code_then_response_failed():
    writer, events, _ = written(PLAIN[:1], "stop")
    failure = writer.fail(ServiceUnavailable("No worker.", code="no_worker_available"))
    for event in failure:
        validate("ResponseStreamEvent", event)
    error, failed = failure
    assert (error["type"], error["code"], error["message"]) == ("error", "no_worker_available", "No worker.")
    assert failed["type"] == "response.failed" and failed["response"]["status"] == "failed"
    assert failed["response"]["error"] == {"code": "server_error", "message": "No worker."}
    assert failed["sequence_number"] == events[-1]["sequence_number"] + 2


def parse(body: dict):
    return parse_responses_request(json.dumps(body).encode(), content_type="application/json", headers={})


def test_a_full_request_translates_into_the_chat_request_and_echoes_openais_shapes():
    body = {
        "model": MODEL,
        "instructions": "Be brief.",
        "input": [
            {"role": "developer", "content": "Use metric units."},
            {"role": "user", "content": "Oslo?"},
            {"type": "reasoning", "id": "rs_1", "summary": []},
            {"type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": '{"city":"Oslo"}'},
            {"type": "function_call_output", "call_id": "call_1", "output": "4 C"},
            {
                "id": "msg_1",
                "type": "message",
                "status": "completed",
                "role": "assistant",
                "content": [{"type": "output_text", "text": "4 C.", "annotations": [], "logprobs": []}],
            },
        ],
        "tools": [WEATHER],
        "tool_choice": {"type": "function", "name": "get_weather"},
        "parallel_tool_calls": False,
        "text": {"format": {"type": "json_schema", "name": "w", "schema": {"type": "object"}, "strict": True}},
        "reasoning": {"effort": "low", "summary": "auto"},
        "max_output_tokens": 64,
        "temperature": 0.2,
        "top_p": 0.9,
        "store": False,
        "metadata": {"k": "v"},
        "include": ["reasoning.encrypted_content"],  # ignored: reasoning items here carry none
    }
    validate("CreateResponse", body)
    parsed = parse(body)
    chat = parsed.chat_request(parsed.conversation([]))
    assert chat.messages == [
        {"role": "system", "content": "Be brief."},
        {"role": "system", "content": "Use metric units."},
        {"role": "user", "content": "Oslo?"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "4 C"},
        {"role": "assistant", "content": "4 C."},
    ]
    assert chat.max_tokens == 64 and parsed.store is False
    request = chat.engine_request()
    assert request["tools"] == [
        {"type": "function", "function": {k: WEATHER[k] for k in ("name", "description", "parameters", "strict")}}
    ]
    assert request["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    assert request["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "w", "schema": {"type": "object"}, "strict": True},
    }
    assert request["chat_template_kwargs"] == {"enable_thinking": True}
    assert (request["temperature"], request["top_p"], request["parallel_tool_calls"]) == (0.2, 0.9, False)
    writer = ResponseWriter(
        id="resp_x", model=MODEL, echo=parsed.echo, store=False, previous_response_id=None, max_output_tokens=64
    )
    echoed = writer.response(status="completed", usage=USAGE)
    validate("Response", echoed)
    assert echoed["tools"] == [WEATHER] and echoed["tool_choice"] == {"type": "function", "name": "get_weather"}
    assert echoed["text"]["format"]["type"] == "json_schema" and echoed["metadata"] == {"k": "v"}


def test_a_string_input_is_one_user_message_and_an_earlier_conversation_comes_first():
    parts = parse({"input": [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Hi"}]}]})
    assert parts.conversation([]) == [{"role": "user", "content": "Hi"}]
    parsed = parse({"input": "And Rome?", "reasoning": {"effort": "minimal"}})
    earlier = [
        {"role": "user", "content": "Oslo?"},
        {"role": "assistant", "content": "", "tool_calls": [{"id": "c1", "type": "function", "function": {}}]},
    ]
    assert parsed.conversation(earlier)[-1] == {"role": "user", "content": "And Rome?"}
    answer = parse({"input": [{"type": "function_call_output", "call_id": "c1", "output": "4 C"}]})
    assert answer.conversation(earlier)[-1] == {"role": "tool", "tool_call_id": "c1", "content": "4 C"}
    chat = parsed.chat_request(parsed.conversation([]))
    assert chat.engine_request()["chat_template_kwargs"] == {"enable_thinking": False}


@pytest.mark.parametrize(
    ("body", "param", "code"),
    [
        ({"input": "x", "tools": [{"type": "web_search"}]}, "tools", "unsupported_value"),
        ({"input": "x", "tools": [WEATHER, {"type": "file_search", "vector_store_ids": ["v"]}]}, "tools", None),
        ({"input": "x", "tools": [{"type": "mcp", "server_label": "s"}]}, "tools", None),
        ({"input": "x", "tools": [{"type": "code_interpreter", "container": "auto"}]}, "tools", None),
        ({}, "input", "missing_required_parameter"),
        ({"input": 3}, "input", "invalid_type"),
        (
            {"input": [{"role": "user", "content": [{"type": "input_image", "image_url": "https://x/y.png"}]}]},
            "input[0].content[0].type",
            "unsupported_value",
        ),
        ({"input": [{"role": "robot", "content": "x"}]}, "input[0].role", "invalid_value"),
        ({"input": [{"type": "item_reference", "id": "msg_1"}]}, "input[0].type", "unsupported_value"),
        (
            {"input": [{"type": "function_call_output", "call_id": "nope", "output": "x"}]},
            "input[0].call_id",
            "invalid_value",
        ),
        ({"input": "x", "tool_choice": {"type": "function", "name": "get_weather"}}, "tool_choice", "invalid_value"),
        ({"input": "x", "tools": [WEATHER], "tool_choice": {"type": "web_search"}}, "tool_choice.type", None),
        ({"input": "x", "text": {"format": {"type": "json_schema", "name": "s"}}}, "text.format.schema", None),
        (
            {"input": "x", "text": {"format": {"type": "json_schema", "name": "s", "schema": {"type": "nope"}}}},
            "text.format.schema",
            "invalid_value",
        ),
        ({"input": "x", "reasoning": {"effort": "extreme"}}, "reasoning.effort", "invalid_value"),
        ({"input": "x", "max_output_tokens": 0}, "max_output_tokens", "integer_below_min_value"),
        ({"input": "x", "temperature": 3}, "temperature", "decimal_above_max_value"),
        ({"input": "x", "background": True}, "background", "unsupported_parameter"),
        ({"input": "x", "include": ["message.output_text.logprobs"]}, "include[0]", "unsupported_value"),
        ({"input": "x", "truncation": "auto"}, "truncation", "unsupported_value"),
    ],
)
def test_refused_requests_name_their_param_before_any_job(body, param, code):
    with pytest.raises(ApiError) as caught:
        parsed = parse(body)
        parsed.chat_request(parsed.conversation([]))
    assert caught.value.status == 400 and caught.value.param == param
    if code is not None:
        assert caught.value.code == code
    if param == "tools":
        assert repr(body["tools"][-1]["type"]) in caught.value.message
