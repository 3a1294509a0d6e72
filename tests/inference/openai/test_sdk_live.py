"""The official openai SDK, sync and async, against the running platform (daphne): the models API and
request errors arrive as the SDK's own types, with the param and code it exposes to applications."""

import asyncio

import openai
import pytest

from tests.support.openai_schema import validate

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

HI = [{"role": "user", "content": "Hi"}]


@pytest.fixture
def client(live_platform, customer) -> openai.OpenAI:
    return openai.OpenAI(base_url=live_platform.url + "/v1", api_key=customer.key, max_retries=0, timeout=60)


@pytest.fixture
def async_client(live_platform, customer) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=live_platform.url + "/v1", api_key=customer.key, max_retries=0, timeout=60)


def test_sdk_lists_and_retrieves_models_with_our_fields(client):
    models = client.models.list()
    ids = [model.id for model in models.data]
    assert "smollm2-135m-instruct-q4_1" in ids and "qwen3.5-35b-a3b-gguf-q4km" in ids
    qwen = client.models.retrieve("qwen3.5-35b-a3b-gguf-q4km")
    assert (qwen.object, qwen.owned_by) == ("model", "sogni")
    extra = qwen.model_extra
    assert extra["pricing"]["input_spark_per_1m"] == "60" and extra["status"] == "offline"
    assert extra["capabilities"]["reasoning"] is True
    validate("Model", qwen.model_dump())


def test_sdk_gets_not_found_for_an_unknown_model(client):
    with pytest.raises(openai.NotFoundError) as caught:
        client.models.retrieve("gpt-4o")
    assert caught.value.code == "model_not_found"
    with pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(model="gpt-4o", messages=HI)
    assert (caught.value.code, caught.value.param) == ("model_not_found", "model")


@pytest.mark.parametrize(
    ("kwargs", "param", "code"),
    [
        ({"n": 2}, "n", "unsupported_parameter"),
        ({"logit_bias": {"15": 5}}, "logit_bias", "unsupported_parameter"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop", "array_above_max_length"),
        ({"max_tokens": -1}, "max_tokens", "integer_below_min_value"),
        ({"temperature": 3}, "temperature", "decimal_above_max_value"),
        ({"messages": []}, "messages", "empty_array"),
        (
            {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://x/y"}}]}]},
            "messages[0].content[0].type",
            "unsupported_value",
        ),
        (
            {
                "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
                "tool_choice": {"type": "function", "function": {"name": "g"}},
            },
            "tool_choice",
            "invalid_value",
        ),
        (
            {"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "nope"}}}},
            "response_format.json_schema.schema",
            "invalid_value",
        ),
        ({"extra_body": {"token_type": "dollars"}}, "token_type", "invalid_token_type"),
    ],
    ids=["n", "logit_bias", "stop", "max_tokens", "temperature", "empty", "image", "tool_choice", "schema", "token"],
)
def test_sdk_bad_request_carries_param_and_code(client, kwargs, param, code):
    kwargs = {"model": "smollm2-135m-instruct-q4_1", "messages": HI, **kwargs}
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(**kwargs)
    error = caught.value
    assert (error.status_code, error.param, error.code, error.type) == (400, param, code, "invalid_request_error")
    assert error.response.headers["x-request-id"]


def test_async_sdk_gets_the_same_errors(async_client):
    async def run():
        with pytest.raises(openai.BadRequestError) as caught:
            await async_client.chat.completions.create(model="smollm2-135m-instruct-q4_1", messages=HI, n=3)
        assert caught.value.param == "n"
        with pytest.raises(openai.BadRequestError) as caught:
            stream = await async_client.chat.completions.create(
                model="smollm2-135m-instruct-q4_1", messages=[{"role": "robot", "content": "x"}], stream=True
            )
            async for _ in stream:
                pass
        assert caught.value.param == "messages[0].role"
        models = await async_client.models.list()
        assert any(model.id == "smollm2-135m-instruct-q4_1" for model in models.data)
        await async_client.close()

    asyncio.run(run())
