"""OpenAI's Responses API end to end with the official `openai` SDK, against daphne + Celery + real
`sogni-worker` processes: plain and streamed answers, a forced function tool's round trip,
`text.format` json_schema through `responses.parse`, a stored conversation continued by
`previous_response_id`, retrieval and deletion. Every response and event is validated against
../shared/openai/openapi.json (Response, ResponseStreamEvent) and every answer is charged exactly
usage × the published price, as chat completions are: a response is one chat job.

SmolLM2 on llama-cpp answers the plain calls; the scripted engine, whose output is fixed (it starts
with the first word of the last user message), answers the tool, json and conversation calls.
"""

import json

import openai
import pytest
from pydantic import BaseModel

from tests.e2e.charging_checks import assert_charged, ledger_is_sound
from tests.support.openai_schema import validate
from tests.support.workers import SMOLLM2

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

SCRIPTED = "qwen3.5-35b-a3b-abliterated-gguf-q4km"
WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "Current weather in a city",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
        "additionalProperties": False,
    },
    "strict": True,
}
TEXT_EVENTS = [
    "response.created",
    "response.in_progress",
    "response.output_item.added",
    "response.content_part.added",
    "response.output_text.delta",
    "response.output_text.done",
    "response.content_part.done",
    "response.output_item.done",
    "response.completed",
]


class Person(BaseModel):
    name: str
    age: int
    tags: list[str]


@pytest.fixture
def client(live_platform, user) -> openai.OpenAI:
    return openai.OpenAI(base_url=live_platform.url + "/v1", api_key=user.key, max_retries=0, timeout=180)


def checked(response) -> dict:
    body = response.model_dump(exclude_unset=True, by_alias=True)  # by_alias: text.format.schema
    validate("Response", body)
    assert response.id.startswith("resp_") and response.object == "response"
    return body


def events_checked(stream) -> list[dict]:
    events = [event.model_dump(exclude_unset=True, by_alias=True) for event in stream]
    for event in events:
        validate("ResponseStreamEvent", event)
    assert [event["sequence_number"] for event in events] == list(range(len(events)))
    return events


def charged(client, response: dict) -> None:
    usage = response["usage"]
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]
    chat_usage = {"prompt_tokens": usage["input_tokens"], "completion_tokens": usage["output_tokens"], **usage}
    assert_charged(
        completion_id=response["id"],
        usage=chat_usage,
        pricing=client.models.retrieve(response["model"]).model_extra["pricing"],
    )


def collapsed(types: list[str]) -> list[str]:
    """Event types with runs of the same type collapsed into one."""
    return [kind for i, kind in enumerate(types) if i == 0 or types[i - 1] != kind]


def test_plain_and_streamed_responses_on_smollm2_are_charged_exactly(workers, client):
    workers.start("smol")

    response = client.responses.create(
        model=SMOLLM2, instructions="You are terse.", input="Say hello", max_output_tokens=8, temperature=0
    )
    body = checked(response)
    assert response.status in ("completed", "incomplete") and response.output_text.strip()
    assert 0 < response.usage.output_tokens <= 8 and body["instructions"] == "You are terse."
    charged(client, body)

    stream = client.responses.create(
        model=SMOLLM2,
        instructions="You are terse.",
        input="Say hello",
        max_output_tokens=8,
        temperature=0,
        stream=True,
    )
    events = events_checked(stream)
    types = collapsed([event["type"] for event in events])
    final = events[-1]["response"]
    if final["status"] == "incomplete":  # the 8 tokens ran out
        assert types == [*TEXT_EVENTS[:-1], "response.incomplete"]
    else:
        assert types == TEXT_EVENTS
    text = "".join(event["delta"] for event in events if event["type"] == "response.output_text.delta")
    assert text == final["output"][0]["content"][0]["text"] == response.output_text  # temperature 0: the same
    assert {event["item_id"] for event in events if "item_id" in event} == {final["output"][0]["id"]}
    charged(client, final)


def test_a_stored_conversation_continues_by_id_and_can_be_retrieved_and_deleted(workers, client):
    from inference.models import Job

    workers.start("scripted", engine="scripted", models=[SCRIPTED], extra=["--scripted-rate", "0"])

    first = client.responses.create(model=SCRIPTED, instructions="Be brief.", input="Oslo is cold")
    checked(first)
    assert first.output_text.startswith("Oslo") and first.store is True
    charged(client, first.model_dump())

    events = events_checked(
        client.responses.create(model=SCRIPTED, input="Rome then?", previous_response_id=first.id, stream=True)
    )
    second = events[-1]["response"]
    assert collapsed([event["type"] for event in events]) == TEXT_EVENTS
    assert second["previous_response_id"] == first.id and second["output"][0]["content"][0]["text"].startswith("Rome")
    # The model saw the stored conversation (without the first request's instructions), then the new input.
    assert Job.objects.get(public_id=second["id"]).request["messages"] == [
        {"role": "user", "content": "Oslo is cold"},
        {"role": "assistant", "content": first.output_text},
        {"role": "user", "content": "Rome then?"},
    ]
    assert second["usage"]["input_tokens"] > first.usage.input_tokens
    charged(client, second)

    retrieved = client.responses.retrieve(second["id"])
    assert checked(retrieved) == second

    unstored = client.responses.create(model=SCRIPTED, input="Nothing kept", store=False)
    assert checked(unstored)["store"] is False
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(unstored.id)

    client.responses.delete(first.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(first.id)
    with pytest.raises(openai.NotFoundError) as caught:
        client.responses.create(model=SCRIPTED, input="Again?", previous_response_id=first.id)
    assert (caught.value.param, caught.value.code) == ("previous_response_id", "previous_response_not_found")
    ledger_is_sound()


def test_a_forced_function_tool_round_trips_and_json_schema_parses(workers, client):
    workers.start("scripted", engine="scripted", models=[SCRIPTED], extra=["--scripted-rate", "0"])
    question = [{"role": "user", "content": "Paris weather?"}]
    forced = {"type": "function", "name": "get_weather"}

    asked = client.responses.create(model=SCRIPTED, input=question, tools=[WEATHER], tool_choice=forced)
    body = checked(asked)
    (call,) = asked.output
    assert (call.type, call.name, json.loads(call.arguments)) == ("function_call", "get_weather", {"city": "Paris"})
    assert body["tools"] == [WEATHER] and body["tool_choice"] == forced
    charged(client, body)

    # Streamed, the call's arguments arrive as deltas and are whole in .done.
    events = events_checked(
        client.responses.create(model=SCRIPTED, input=question, tools=[WEATHER], tool_choice=forced, stream=True)
    )
    assert collapsed([event["type"] for event in events]) == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.completed",
    ]
    deltas = "".join(e["delta"] for e in events if e["type"] == "response.function_call_arguments.delta")
    (done,) = [e for e in events if e["type"] == "response.function_call_arguments.done"]
    assert json.loads(deltas) == json.loads(done["arguments"]) == {"city": "Paris"}

    # The call's output goes back with the call itself (stateless), then by previous_response_id.
    output = {"type": "function_call_output", "call_id": call.call_id, "output": '{"temperature_c": 21}'}
    stateless = client.responses.create(
        model=SCRIPTED,
        input=[*question, *[item.model_dump(exclude_none=True) for item in asked.output], output],
        tools=[WEATHER],
        tool_choice="none",
    )
    checked(stateless)
    assert stateless.output[0].type == "message" and stateless.output_text.startswith("Paris")
    continued = client.responses.create(
        model=SCRIPTED, input=[output], previous_response_id=asked.id, tools=[WEATHER], tool_choice="none"
    )
    checked(continued)
    assert continued.output_text == stateless.output_text

    # A function_call_output that answers no call is refused before any job.
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(model=SCRIPTED, input=[{**output, "call_id": "call_nope"}])
    assert caught.value.param == "input[0].call_id"

    parsed = client.responses.parse(model=SCRIPTED, input="Ada, 36, mathematician", text_format=Person)
    checked(parsed)
    assert parsed.output_parsed == Person(name="Ada,", age=1, tags=["Ada,"])
    assert parsed.text.format.type == "json_schema"

    # A reasoning effort turns the template's thinking on: the reasoning is a summary item first.
    events = events_checked(
        client.responses.create(model=SCRIPTED, input="Think first", reasoning={"effort": "high"}, stream=True)
    )
    assert "response.reasoning_summary_text.delta" in [event["type"] for event in events]
    thought = events[-1]["response"]
    reasoning, message = thought["output"]
    assert (reasoning["type"], reasoning["summary"]) == (
        "reasoning",
        [{"type": "summary_text", "text": "think0 think1 "}],
    )
    assert message["content"][0]["text"].startswith("Think")
    assert thought["usage"]["output_tokens_details"]["reasoning_tokens"] > 0
    charged(client, thought)

    for tool in ({"type": "web_search"}, {"type": "file_search", "vector_store_ids": ["vs_1"]}):
        with pytest.raises(openai.BadRequestError) as caught:
            client.responses.create(model=SCRIPTED, input="Search", tools=[tool])
        assert caught.value.param == "tools" and f"'{tool['type']}'" in caught.value.message
        validate("ErrorResponse", caught.value.response.json())
    ledger_is_sound()
