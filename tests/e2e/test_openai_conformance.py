"""The OpenAI surface end to end with real clients: the official `openai` SDK (sync and async,
streaming and not) and LangChain's ChatOpenAI, against daphne + Celery + real `sogni-worker`
processes. Every body, chunk and error is validated against ../shared/openai/openapi.json, and every
completion is checked against the wallet: charged exactly usage × the published price.

SmolLM2 on llama-cpp answers the plain, multi-turn and include_usage calls (temperature 0, few
tokens: the machine has 2 cores); the scripted engine, whose output is fixed, answers the tool-call
and json_schema calls so their shape can be asserted exactly.
"""

import asyncio
import json

import httpx
import openai
import pytest

from tests.e2e.charging_checks import assert_charged, ledger_is_sound
from tests.support.factories import SMOLLM2, TIME, WEATHER, account_create
from tests.support.openai_schema import validate

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

SCRIPTED = "qwen3.5-35b-a3b-abliterated-gguf-q4km"
LLAMA = {"model": SMOLLM2, "temperature": 0, "max_tokens": 8}


@pytest.fixture
def client(live_platform, user) -> openai.OpenAI:
    return openai.OpenAI(base_url=live_platform.url + "/v1", api_key=user.key, max_retries=0, timeout=180)


@pytest.fixture
def async_client(live_platform, user) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=live_platform.url + "/v1", api_key=user.key, max_retries=0, timeout=180)


def pricing(client: openai.OpenAI, model: str) -> dict:
    return client.models.retrieve(model).model_extra["pricing"]


def checked(reply) -> dict:
    """A non-streamed reply: valid against the spec and charged exactly."""
    body = reply.model_dump(exclude_unset=True)
    validate("CreateChatCompletionResponse", body)
    assert reply.id.startswith("chatcmpl-") and reply.object == "chat.completion"
    return body


def chunks_checked(chunks: list) -> list[dict]:
    bodies = [chunk.model_dump(exclude_unset=True) for chunk in chunks]
    for body in bodies:
        validate("CreateChatCompletionStreamResponse", body)
    assert len({body["id"] for body in bodies}) == 1
    return bodies


def streamed_text(bodies: list[dict]) -> str:
    return "".join(b["choices"][0]["delta"].get("content") or "" for b in bodies if b["choices"])


def streamed_tool_calls(bodies: list[dict]) -> list[dict]:
    """The tool calls a stream's deltas add up to (index, id and name first, then argument fragments)."""
    calls: dict[int, dict] = {}
    for body in bodies:
        for delta in (body["choices"][0]["delta"].get("tool_calls") or []) if body["choices"] else []:
            call = calls.setdefault(delta["index"], {"id": None, "name": "", "arguments": ""})
            call["id"] = delta.get("id") or call["id"]
            function = delta.get("function") or {}
            call["name"] += function.get("name") or ""
            call["arguments"] += function.get("arguments") or ""
    return [calls[i] for i in sorted(calls)]


def test_sdk_plain_multi_turn_and_include_usage_on_smollm2_are_charged_exactly(workers, client, async_client):
    workers.start("smol")
    prices = pricing(client, SMOLLM2)

    # Plain chat, not streamed.
    reply = client.chat.completions.create(messages=[{"role": "user", "content": "Say hello"}], **LLAMA)
    body = checked(reply)
    assert reply.choices[0].message.content.strip()
    assert reply.choices[0].finish_reason in ("stop", "length")
    assert 0 < reply.usage.completion_tokens <= 8
    assert_charged(completion_id=reply.id, usage=body["usage"], pricing=prices)

    # Multi-turn: the earlier assistant turn is part of the prompt the worker counts.
    turns = [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Name a colour."},
        {"role": "assistant", "content": reply.choices[0].message.content},
        {"role": "user", "content": "Name another one."},
    ]
    second = client.chat.completions.create(messages=turns, **LLAMA)
    second_body = checked(second)
    assert second.choices[0].message.content.strip()
    assert second.usage.prompt_tokens > reply.usage.prompt_tokens
    assert_charged(completion_id=second.id, usage=second_body["usage"], pricing=prices)

    # Streamed with include_usage: role chunk, content deltas, finish chunk, then usage with empty choices.
    stream = client.chat.completions.create(
        messages=[{"role": "user", "content": "Count from 1 to 10."}],
        stream=True,
        stream_options={"include_usage": True},
        **LLAMA,
    )
    bodies = chunks_checked(list(stream))
    assert bodies[0]["choices"][0]["delta"]["role"] == "assistant"
    assert streamed_text(bodies).strip()
    assert bodies[-2]["choices"][0]["finish_reason"] in ("stop", "length")
    usage_chunk = bodies[-1]
    assert usage_chunk["choices"] == [] and all(b.get("usage") is None for b in bodies[:-1])
    assert_charged(completion_id=usage_chunk["id"], usage=usage_chunk["usage"], pricing=prices)

    # A real model's tool round trip: the named function's arguments are constrained to its schema.
    city_tool = {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string", "enum": ["Paris", "Rome"]}},
                "required": ["city"],
            },
        },
    }
    question = [{"role": "user", "content": "What is the weather in Paris?"}]
    named = {"type": "function", "function": {"name": "get_weather"}}
    asked = client.chat.completions.create(
        messages=question, tools=[city_tool], tool_choice=named, **{**LLAMA, "max_tokens": 40}
    )
    asked_body = checked(asked)
    assert asked.choices[0].finish_reason == "tool_calls"
    (call,) = asked.choices[0].message.tool_calls
    assert call.function.name == "get_weather" and json.loads(call.function.arguments)["city"] in ("Paris", "Rome")
    assert_charged(completion_id=asked.id, usage=asked_body["usage"], pricing=prices)
    answered = client.chat.completions.create(
        messages=[
            *question,
            asked.choices[0].message.model_dump(exclude_none=True),
            {"role": "tool", "tool_call_id": call.id, "content": "Sunny, 21 C"},
        ],
        tools=[city_tool],
        tool_choice="none",
        **LLAMA,
    )
    answered_body = checked(answered)
    assert answered.choices[0].message.content.strip() and not answered.choices[0].message.tool_calls
    assert_charged(completion_id=answered.id, usage=answered_body["usage"], pricing=prices)

    # The async client: a multi-turn conversation streamed, and the same one not streamed.
    async def async_calls():
        astream = await async_client.chat.completions.create(
            messages=turns, stream=True, stream_options={"include_usage": True}, **LLAMA
        )
        chunks = [chunk async for chunk in astream]
        whole = await async_client.chat.completions.create(messages=turns, **LLAMA)
        return chunks, whole

    chunks, whole = asyncio.run(async_calls())
    abodies = chunks_checked(chunks)
    assert streamed_text(abodies).strip()
    assert_charged(completion_id=abodies[-1]["id"], usage=abodies[-1]["usage"], pricing=prices)
    whole_body = checked(whole)
    # temperature 0 on the same prompt: the streamed and the whole answer agree.
    assert whole.choices[0].message.content == streamed_text(abodies)
    assert_charged(completion_id=whole.id, usage=whole_body["usage"], pricing=prices)


def tool_round_trip_sync(client, tool_choice, *, stream: bool) -> None:
    question = [{"role": "user", "content": "Paris weather and time?"}]
    request = {"model": SCRIPTED, "messages": question, "tools": [WEATHER, TIME], "tool_choice": tool_choice}
    if stream:
        bodies = chunks_checked(list(client.chat.completions.create(stream=True, **request)))
        calls = streamed_tool_calls(bodies)
        assert bodies[-1]["choices"][0]["finish_reason"] == "tool_calls"
    else:
        reply = client.chat.completions.create(**request)
        checked(reply)
        assert reply.choices[0].finish_reason == "tool_calls"
        assert reply.choices[0].message.content is None
        calls = [
            {"id": c.id, "name": c.function.name, "arguments": c.function.arguments}
            for c in reply.choices[0].message.tool_calls
        ]
    expected = "get_time" if isinstance(tool_choice, dict) else "get_weather"
    assert [c["name"] for c in calls] == [expected]
    arguments = json.loads(calls[0]["arguments"])
    assert arguments == ({"zone": "Paris"} if expected == "get_time" else {"city": "Paris"})

    # The tool's result goes back; the final answer is text.
    history = question + [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": calls[0]["id"],
                    "type": "function",
                    "function": {"name": calls[0]["name"], "arguments": calls[0]["arguments"]},
                }
            ],
        },
        {"role": "tool", "tool_call_id": calls[0]["id"], "content": '{"temperature_c": 21}'},
        {"role": "user", "content": "Thanks, summarise."},
    ]
    final = client.chat.completions.create(model=SCRIPTED, messages=history, tools=[WEATHER, TIME], tool_choice="none")
    checked(final)
    assert final.choices[0].finish_reason == "stop"
    assert final.choices[0].message.content.startswith("Thanks,")
    assert not final.choices[0].message.tool_calls


def test_sdk_tool_round_trips_with_named_auto_and_required_tool_choice(workers, client, async_client):
    workers.start("scripted", engine="scripted", models=[SCRIPTED], extra=["--scripted-rate", "0"])

    for tool_choice in ({"type": "function", "function": {"name": "get_time"}}, "auto", "required"):
        tool_round_trip_sync(client, tool_choice, stream=False)
        tool_round_trip_sync(client, tool_choice, stream=True)

    async def async_round_trip(tool_choice):
        question = [{"role": "user", "content": "Rome weather?"}]
        stream = await async_client.chat.completions.create(
            model=SCRIPTED, messages=question, tools=[WEATHER], tool_choice=tool_choice, stream=True
        )
        calls = streamed_tool_calls(chunks_checked([chunk async for chunk in stream]))
        assert [(c["name"], json.loads(c["arguments"])) for c in calls] == [("get_weather", {"city": "Rome"})]
        assistant = {
            "role": "assistant",
            "tool_calls": [
                {"id": c["id"], "type": "function", "function": {"name": c["name"], "arguments": c["arguments"]}}
                for c in calls
            ],
        }
        result = {"role": "tool", "tool_call_id": calls[0]["id"], "content": "sunny"}
        final = await async_client.chat.completions.create(
            model=SCRIPTED, messages=[*question, assistant, result, {"role": "user", "content": "Great, bye"}]
        )
        checked(final)
        assert final.choices[0].message.content.startswith("Great,")

    async def async_round_trips():  # one event loop: the async client's connections belong to it
        for tool_choice in ({"type": "function", "function": {"name": "get_weather"}}, "auto", "required"):
            await async_round_trip(tool_choice)

    asyncio.run(async_round_trips())
    ledger_is_sound()


def test_sdk_json_schema_output_parses_and_matches_its_schema(workers, client, async_client):
    import jsonschema

    workers.start("scripted", engine="scripted", models=[SCRIPTED], extra=["--scripted-rate", "0"])
    schema = {
        "type": "object",
        "properties": {"name": {"type": "string"}, "age": {"type": "integer"}, "tags": {"type": "array"}},
        "required": ["name", "age", "tags"],
        "additionalProperties": False,
    }
    response_format = {"type": "json_schema", "json_schema": {"name": "person", "schema": schema, "strict": True}}
    messages = [{"role": "user", "content": "Ada, 36, mathematician"}]

    reply = client.chat.completions.create(model=SCRIPTED, messages=messages, response_format=response_format)
    checked(reply)
    parsed = json.loads(reply.choices[0].message.content)
    jsonschema.validate(parsed, schema)

    async def streamed():
        stream = await async_client.chat.completions.create(
            model=SCRIPTED, messages=messages, response_format=response_format, stream=True
        )
        return [chunk async for chunk in stream]

    text = streamed_text(chunks_checked(asyncio.run(streamed())))
    assert json.loads(text) == parsed


def test_langchain_chat_openai_bind_tools_round_trip(workers, live_platform, user):
    from langchain_core.messages import HumanMessage, ToolMessage
    from langchain_openai import ChatOpenAI

    from inference.models import Job

    workers.start("scripted", engine="scripted", models=[SCRIPTED], extra=["--scripted-rate", "0"])
    llm = ChatOpenAI(model=SCRIPTED, base_url=live_platform.url + "/v1", api_key=user.key, max_retries=0, timeout=60)

    question = HumanMessage("Oslo weather?")
    asked = llm.bind_tools([WEATHER], tool_choice="get_weather").invoke([question])
    assert [(c["name"], c["args"]) for c in asked.tool_calls] == [("get_weather", {"city": "Oslo"})]
    call_id = asked.tool_calls[0]["id"]

    result = ToolMessage(content='{"temperature_c": 4}', tool_call_id=call_id)
    final = llm.bind_tools([WEATHER], tool_choice="none").invoke([question, asked, result, HumanMessage("Sum up")])
    assert final.content.startswith("Sum") and not final.tool_calls
    assert final.response_metadata["finish_reason"] == "stop"
    assert list(Job.objects.values_list("status", flat=True)) == ["completed", "completed"]
    ledger_is_sound()


def test_errors_validate_and_a_short_balance_gets_402_before_any_job(workers, client, live_platform, user):
    from billing.models import LedgerEntry
    from billing.services.adjustments import wallet_adjust
    from inference.models import Job

    workers.start("scripted", engine="scripted", models=[SCRIPTED], extra=["--scripted-rate", "0"])
    url = live_platform.url + "/v1/chat/completions"
    headers = {"Authorization": f"Bearer {user.key}"}
    hi = [{"role": "user", "content": "hi"}]
    cases = [
        ({"model": SCRIPTED, "messages": hi, "n": 2}, 400, "n"),
        ({"model": "gpt-4o", "messages": hi}, 404, "model"),
        (
            {
                "model": SCRIPTED,
                "messages": hi,
                "tools": [WEATHER],
                "tool_choice": {"type": "function", "function": {"name": "nope"}},
            },
            400,
            "tool_choice",
        ),  # fmt: skip
    ]
    for body, status, param in cases:
        response = httpx.post(url, json=body, headers=headers, timeout=30)
        assert response.status_code == status, response.text
        validate("ErrorResponse", response.json())
        assert response.json()["error"]["param"] == param
    assert not Job.objects.exists()

    operator = account_create(email="ops@example.com").user
    wallet = user.user.wallets.get(token_type="spark")
    wallet_adjust(wallet=wallet, amount=-wallet.available, reason="drain for the test", operator=operator, key="drain")
    entries = LedgerEntry.objects.count()

    with pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(model=SCRIPTED, messages=hi, max_tokens=8, extra_body={"token_type": "spark"})
    error = caught.value
    assert error.status_code == 402
    assert error.response.headers["x-should-retry"] == "false"
    validate("ErrorResponse", error.response.json())
    assert (error.type, error.code) == ("insufficient_quota", "insufficient_balance")
    assert not Job.objects.exists()
    assert LedgerEntry.objects.count() == entries
    ledger_is_sound()
