"""Malformed chat-completion bodies: each gets the right status, param and code, in OpenAI's error shape."""

import json

import pytest

from inference.openai.requests import parse_chat_request, parse_http_request
from sogni_platform.exceptions import ApiError, error_response
from tests.support.openai_schema import validate

USER = {"role": "user", "content": "Hi"}
TOOL = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}
CALL = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}


def body(**fields):
    return {"model": "m", "messages": [USER], **fields}


def msgs(*messages):
    return {"model": "m", "messages": list(messages)}


# (id, body, param, code); status 400.
CASES = [
    # the body as a whole
    ("no-messages", {"model": "m"}, "messages", "missing_required_parameter"),
    ("messages-null", {"model": "m", "messages": None}, "messages", "missing_required_parameter"),
    ("messages-empty", msgs(), "messages", "empty_array"),
    ("messages-string", {"model": "m", "messages": "Hi"}, "messages", "invalid_type"),
    ("messages-object", {"model": "m", "messages": USER}, "messages", "invalid_type"),
    ("message-not-object", msgs("Hi"), "messages[0]", "invalid_type"),
    ("message-no-role", msgs({"content": "Hi"}), "messages[0].role", "missing_required_parameter"),
    ("role-unknown", msgs({"role": "robot", "content": "Hi"}), "messages[0].role", "invalid_value"),
    ("role-int", msgs({"role": 1, "content": "Hi"}), "messages[0].role", "invalid_type"),
    (
        "role-function",
        msgs({"role": "function", "name": "f", "content": "x"}),
        "messages[0].role",
        "unsupported_parameter",
    ),
    ("user-no-content", msgs({"role": "user"}), "messages[0].content", "missing_required_parameter"),
    ("user-content-int", msgs({"role": "user", "content": 5}), "messages[0].content", "invalid_type"),
    ("user-content-empty-parts", msgs({"role": "user", "content": []}), "messages[0].content", "empty_array"),
    ("user-part-not-object", msgs({"role": "user", "content": ["Hi"]}), "messages[0].content[0]", "invalid_type"),
    (
        "user-part-no-text",
        msgs({"role": "user", "content": [{"type": "text"}]}),
        "messages[0].content[0].text",
        "missing_required_parameter",
    ),
    (
        "user-part-unknown-type",
        msgs({"role": "user", "content": [{"type": "video", "video": "x"}]}),
        "messages[0].content[0].type",
        "invalid_value",
    ),
    (
        "user-image-part",
        msgs(
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is this?"},
                    {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}},
                ],
            }
        ),
        "messages[0].content[1].type",
        "unsupported_value",
    ),
    (
        "user-audio-part",
        msgs({"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}}]}),
        "messages[0].content[0].type",
        "unsupported_value",
    ),
    (
        "user-file-part",
        msgs({"role": "user", "content": [{"type": "file", "file": {"file_id": "f"}}]}),
        "messages[0].content[0].type",
        "unsupported_value",
    ),
    ("name-int", msgs({"role": "user", "content": "Hi", "name": 3}), "messages[0].name", "invalid_type"),
    (
        "system-content-null",
        msgs({"role": "system", "content": None}, USER),
        "messages[0].content",
        "missing_required_parameter",
    ),
    ("assistant-empty", msgs(USER, {"role": "assistant"}), "messages[1].content", "missing_required_parameter"),
    (
        "assistant-tool-calls-object",
        msgs(USER, {"role": "assistant", "tool_calls": CALL}),
        "messages[1].tool_calls",
        "invalid_type",
    ),
    (
        "assistant-tool-call-no-id",
        msgs(
            USER,
            {"role": "assistant", "tool_calls": [{"type": "function", "function": {"name": "f", "arguments": "{}"}}]},
        ),
        "messages[1].tool_calls[0].id",
        "missing_required_parameter",
    ),
    (
        "assistant-tool-call-no-function",
        msgs(USER, {"role": "assistant", "tool_calls": [{"id": "c", "type": "function"}]}),
        "messages[1].tool_calls[0].function",
        "missing_required_parameter",
    ),
    (
        "assistant-tool-call-args-object",
        msgs(
            USER,
            {
                "role": "assistant",
                "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": {}}}],
            },
        ),
        "messages[1].tool_calls[0].function.arguments",
        "invalid_type",
    ),
    (
        "assistant-custom-tool-call",
        msgs(
            USER,
            {"role": "assistant", "tool_calls": [{"id": "c", "type": "custom", "custom": {"name": "f", "input": "x"}}]},
        ),
        "messages[1].tool_calls[0].type",
        "unsupported_value",
    ),
    (
        "assistant-function-call",
        msgs(USER, {"role": "assistant", "content": None, "function_call": {"name": "f", "arguments": "{}"}}),
        "messages[1].function_call",
        "unsupported_parameter",
    ),
    (
        "tool-without-call-id",
        msgs(USER, {"role": "assistant", "tool_calls": [CALL]}, {"role": "tool", "content": "sunny"}),
        "messages[2].tool_call_id",
        "missing_required_parameter",
    ),
    (
        "tool-unknown-call-id",
        msgs(
            USER,
            {"role": "assistant", "tool_calls": [CALL]},
            {"role": "tool", "tool_call_id": "call_2", "content": "sunny"},
        ),
        "messages[2].tool_call_id",
        "invalid_value",
    ),
    (
        "tool-without-assistant",
        msgs(USER, {"role": "tool", "tool_call_id": "call_1", "content": "sunny"}),
        "messages[1].tool_call_id",
        "invalid_value",
    ),
    (
        "tool-no-content",
        msgs(USER, {"role": "assistant", "tool_calls": [CALL]}, {"role": "tool", "tool_call_id": "call_1"}),
        "messages[2].content",
        "missing_required_parameter",
    ),
    # scalar fields
    ("model-int", body(model=7), "model", "invalid_type"),
    ("model-empty", body(model=""), "model", "empty_string"),
    ("stream-string", body(stream="yes"), "stream", "invalid_type"),
    ("stream-options-list", body(stream=True, stream_options=[]), "stream_options", "invalid_type"),
    (
        "include-usage-string",
        body(stream=True, stream_options={"include_usage": "true"}),
        "stream_options.include_usage",
        "invalid_type",
    ),
    ("max-tokens-negative", body(max_tokens=-1), "max_tokens", "integer_below_min_value"),
    ("max-tokens-zero", body(max_tokens=0), "max_tokens", "integer_below_min_value"),
    ("max-tokens-float", body(max_tokens=10.5), "max_tokens", "invalid_type"),
    ("max-tokens-string", body(max_tokens="10"), "max_tokens", "invalid_type"),
    ("max-tokens-bool", body(max_tokens=True), "max_tokens", "invalid_type"),
    (
        "max-completion-tokens-negative",
        body(max_completion_tokens=-5),
        "max_completion_tokens",
        "integer_below_min_value",
    ),
    ("temperature-high", body(temperature=2.5), "temperature", "decimal_above_max_value"),
    ("temperature-negative", body(temperature=-0.1), "temperature", "decimal_below_min_value"),
    ("temperature-string", body(temperature="hot"), "temperature", "invalid_type"),
    ("temperature-bool", body(temperature=True), "temperature", "invalid_type"),
    ("top-p-zero", body(top_p=0), "top_p", "decimal_below_min_value"),
    ("top-p-high", body(top_p=1.01), "top_p", "decimal_above_max_value"),
    ("frequency-penalty-high", body(frequency_penalty=2.1), "frequency_penalty", "decimal_above_max_value"),
    ("presence-penalty-low", body(presence_penalty=-3), "presence_penalty", "decimal_below_min_value"),
    ("stop-5-strings", body(stop=["a", "b", "c", "d", "e"]), "stop", "array_above_max_length"),
    ("stop-int", body(stop=3), "stop", "invalid_type"),
    ("stop-item-int", body(stop=["a", 3]), "stop[1]", "invalid_type"),
    ("stop-item-empty", body(stop=[""]), "stop[0]", "empty_string"),
    ("seed-float", body(seed=1.5), "seed", "invalid_type"),
    ("seed-huge", body(seed=2**70), "seed", "integer_above_max_value"),
    ("user-int", body(user=42), "user", "invalid_type"),
    ("metadata-string", body(metadata="x"), "metadata", "invalid_type"),
    # extensions
    ("top-k-negative", body(top_k=-1), "top_k", "integer_below_min_value"),
    ("top-k-float", body(top_k=4.5), "top_k", "invalid_type"),
    ("min-p-high", body(min_p=1.5), "min_p", "decimal_above_max_value"),
    ("repetition-penalty-zero", body(repetition_penalty=0), "repetition_penalty", "decimal_below_min_value"),
    ("template-kwargs-list", body(chat_template_kwargs=[]), "chat_template_kwargs", "invalid_type"),
    (
        "enable-thinking-string",
        body(chat_template_kwargs={"enable_thinking": "no"}),
        "chat_template_kwargs.enable_thinking",
        "invalid_type",
    ),
    ("token-type-unknown", body(token_type="usd"), "token_type", "invalid_token_type"),
    ("token-type-int", body(token_type=1), "token_type", "invalid_type"),
    # what the engine cannot honour
    ("n-2", body(n=2), "n", "unsupported_parameter"),
    ("n-0", body(n=0), "n", "integer_below_min_value"),
    ("n-string", body(n="1"), "n", "invalid_type"),
    ("logprobs-string", body(logprobs="yes"), "logprobs", "invalid_type"),
    ("top-logprobs-alone", body(top_logprobs=3), "top_logprobs", "invalid_value"),
    ("top-logprobs-high", body(top_logprobs=30), "top_logprobs", "integer_above_max_value"),
    ("audio", body(audio={"voice": "alloy", "format": "wav"}), "audio", "unsupported_parameter"),
    ("modalities-audio", body(modalities=["text", "audio"]), "modalities[1]", "unsupported_value"),
    ("prediction", body(prediction={"type": "content", "content": "x"}), "prediction", "unsupported_parameter"),
    ("web-search", body(web_search_options={}), "web_search_options", "unsupported_parameter"),
    ("logit-bias", body(logit_bias={"50256": -100}), "logit_bias", "unsupported_parameter"),
    ("functions", body(functions=[{"name": "f"}]), "functions", "unsupported_parameter"),
    ("function-call", body(function_call="auto"), "function_call", "unsupported_parameter"),
    # tools and tool_choice
    ("tools-object", body(tools=TOOL), "tools", "invalid_type"),
    (
        "tool-type-custom",
        body(tools=[{"type": "custom", "custom": {"name": "f"}}]),
        "tools[0].type",
        "unsupported_value",
    ),
    ("tool-no-function", body(tools=[{"type": "function"}]), "tools[0].function", "missing_required_parameter"),
    (
        "tool-no-name",
        body(tools=[{"type": "function", "function": {}}]),
        "tools[0].function.name",
        "missing_required_parameter",
    ),
    (
        "tool-bad-name",
        body(tools=[{"type": "function", "function": {"name": "get weather!"}}]),
        "tools[0].function.name",
        "invalid_value",
    ),
    (
        "tool-long-name",
        body(tools=[{"type": "function", "function": {"name": "f" * 65}}]),
        "tools[0].function.name",
        "invalid_value",
    ),
    ("tool-duplicate-name", body(tools=[TOOL, TOOL]), "tools[1].function.name", "invalid_value"),
    (
        "tool-parameters-string",
        body(tools=[{"type": "function", "function": {"name": "f", "parameters": "{}"}}]),
        "tools[0].function.parameters",
        "invalid_type",
    ),
    (
        "tool-parameters-array-schema",
        body(tools=[{"type": "function", "function": {"name": "f", "parameters": {"type": "array"}}}]),
        "tools[0].function.parameters",
        "invalid_value",
    ),
    (
        "tool-parameters-invalid-schema",
        body(
            tools=[
                {
                    "type": "function",
                    "function": {
                        "name": "f",
                        "parameters": {"type": "object", "properties": {"x": {"type": "colour"}}},
                    },
                }
            ]
        ),
        "tools[0].function.parameters",
        "invalid_value",
    ),
    (
        "tool-choice-unknown-name",
        body(tools=[TOOL], tool_choice={"type": "function", "function": {"name": "nope"}}),
        "tool_choice",
        "invalid_value",
    ),
    (
        "tool-choice-name-without-tools",
        body(tool_choice={"type": "function", "function": {"name": "get_weather"}}),
        "tool_choice",
        "invalid_value",
    ),
    ("tool-choice-required-without-tools", body(tool_choice="required"), "tool_choice", "invalid_value"),
    ("tool-choice-unknown-string", body(tools=[TOOL], tool_choice="always"), "tool_choice", "invalid_value"),
    ("tool-choice-int", body(tools=[TOOL], tool_choice=1), "tool_choice", "invalid_type"),
    (
        "tool-choice-no-function",
        body(tools=[TOOL], tool_choice={"type": "function"}),
        "tool_choice.function",
        "missing_required_parameter",
    ),
    (
        "tool-choice-allowed-tools",
        body(tools=[TOOL], tool_choice={"type": "allowed_tools", "allowed_tools": {}}),
        "tool_choice.type",
        "unsupported_parameter",
    ),
    (
        "parallel-tool-calls-string",
        body(tools=[TOOL], parallel_tool_calls="yes"),
        "parallel_tool_calls",
        "invalid_type",
    ),
    # response_format
    ("response-format-string", body(response_format="json"), "response_format", "invalid_type"),
    ("response-format-unknown", body(response_format={"type": "xml"}), "response_format.type", "invalid_value"),
    (
        "json-schema-missing",
        body(response_format={"type": "json_schema"}),
        "response_format.json_schema",
        "missing_required_parameter",
    ),
    (
        "json-schema-no-name",
        body(response_format={"type": "json_schema", "json_schema": {"schema": {}}}),
        "response_format.json_schema.name",
        "missing_required_parameter",
    ),
    (
        "json-schema-invalid",
        body(
            response_format={
                "type": "json_schema",
                "json_schema": {"name": "out", "schema": {"type": "object", "properties": {"a": {"type": 12}}}},
            }
        ),
        "response_format.json_schema.schema",
        "invalid_value",
    ),
    (
        "json-schema-not-object",
        body(response_format={"type": "json_schema", "json_schema": {"name": "out", "schema": ["type", "object"]}}),
        "response_format.json_schema.schema",
        "invalid_type",
    ),
    (
        "json-schema-bad-required",
        body(
            response_format={
                "type": "json_schema",
                "json_schema": {"name": "out", "schema": {"type": "object", "required": "a"}},
            }
        ),
        "response_format.json_schema.schema",
        "invalid_value",
    ),
]


def _error(raw: bytes, content_type: str | None = "application/json", headers=None) -> ApiError:
    with pytest.raises(ApiError) as caught:
        parse_chat_request(raw, content_type=content_type, headers=headers or {})
    error = caught.value
    response = error_response(error)
    validate("ErrorResponse", json.loads(response.content))
    assert response.status_code == error.status
    return error


@pytest.mark.parametrize(("case_body", "param", "code"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_malformed_body_names_the_param(case_body, param, code):
    error = _error(json.dumps(case_body).encode())
    assert (error.status, error.type, error.param, error.code) == (400, "invalid_request_error", param, code)
    assert error.message


def test_there_are_at_least_fifty_cases():
    assert len(CASES) >= 50


@pytest.mark.parametrize(
    "raw",
    [b"{", b"", b"not json", b'{"messages": [}', b"\xff\xfe{}", b'{"model": "m", "temperature": NaN}'],
    ids=["truncated", "empty", "text", "broken-array", "not-utf8", "nan"],
)
def test_invalid_json_is_400_invalid_json(raw):
    error = _error(raw)
    assert (error.status, error.code, error.param) == (400, "invalid_json", None)


@pytest.mark.parametrize("raw", [b"[]", b'"hi"', b"3", b"null", b"true"])
def test_a_body_that_is_not_an_object_is_invalid_json(raw):
    error = _error(raw)
    assert (error.status, error.code) == (400, "invalid_json")


def test_deeply_nested_json_is_400_not_a_crash():
    raw = b'{"model": "m", "messages": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    assert _error(raw).code == "invalid_json"


@pytest.mark.parametrize(
    "content_type",
    [
        None,
        "",
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/json; charset=latin-1",
        "application/jsonl",
    ],
)
def test_wrong_content_type_is_415(content_type):
    error = _error(json.dumps(body()).encode(), content_type=content_type)
    assert (error.status, error.code) == (415, "unsupported_media_type")


def test_body_over_the_limit_is_413(settings):
    settings.MAX_REQUEST_BYTES = 4 * 1024 * 1024
    raw = json.dumps(msgs({"role": "user", "content": "x" * (10 * 1024 * 1024)})).encode()
    error = _error(raw)
    assert (error.status, error.code) == (413, "request_too_large")
    # the size is checked first, whatever the body claims to be
    assert _error(raw, content_type="text/plain").status == 413


def test_the_limit_is_a_setting(settings):
    raw = json.dumps(body()).encode()
    settings.MAX_REQUEST_BYTES = len(raw)
    parse_chat_request(raw, content_type="application/json", headers={})
    settings.MAX_REQUEST_BYTES = len(raw) - 1
    assert _error(raw).status == 413


def test_bad_token_type_header_is_400():
    error = _error(json.dumps(body()).encode(), headers={"X-Token-Type": "dollars"})
    assert (error.param, error.code) == ("X-Token-Type", "invalid_token_type")
    assert "X-Token-Type" in error.message


def test_refusals_say_why():
    assert "'logprobs' to be true" in _error(json.dumps(body(top_logprobs=2)).encode()).message
    image_case = next(c[1] for c in CASES if c[0] == "user-image-part")
    assert "image" in _error(json.dumps(image_case).encode()).message


def test_nul_characters_are_refused_before_they_reach_the_database():
    error = _error(json.dumps(msgs({"role": "user", "content": "a\u0000b"})).encode())
    assert (error.status, error.param, error.code) == (400, "messages[0].content", "invalid_value")


def test_lone_surrogates_are_refused():
    raw = (
        b'{"messages": [{"role": "user", "content": "Hi"}],'
        b' "tools": [{"type": "function", "function": {"name": "\\ud800"}}]}'
    )
    error = _error(raw)
    assert (error.status, error.param) == (400, "tools[0].function.name")


def test_deeply_nested_schema_is_a_400_naming_where():
    schema: dict = {"type": "object"}
    for _ in range(200):
        schema = {"type": "object", "properties": {"x": schema}}
    error = _error(
        json.dumps(body(tools=[{"type": "function", "function": {"name": "f", "parameters": schema}}])).encode()
    )
    assert error.status == 400 and error.param.startswith("tools[0].function.parameters.properties.x")


@pytest.mark.parametrize("size", [3 * 1024 * 1024, 10 * 1024 * 1024])
def test_django_request_over_or_under_djangos_own_limit(rf, settings, size):
    """The view's entry point: 413 from Content-Length, never Django's HTML RequestDataTooBig."""
    settings.MAX_REQUEST_BYTES = 4 * 1024 * 1024
    raw = json.dumps(msgs({"role": "user", "content": "x" * size}))
    request = rf.post("/v1/chat/completions", raw, content_type="application/json")
    if size < settings.MAX_REQUEST_BYTES:
        assert parse_http_request(request).messages[0]["content"] == "x" * size
    else:
        with pytest.raises(ApiError) as caught:
            parse_http_request(request)
        assert (caught.value.status, caught.value.code) == (413, "request_too_large")


def test_django_request_wrong_content_type(rf):
    request = rf.post("/v1/chat/completions", "messages=hi", content_type="application/x-www-form-urlencoded")
    with pytest.raises(ApiError) as caught:
        parse_http_request(request)
    assert caught.value.status == 415


def test_numbers_beyond_a_double_are_refused_not_stored_as_infinity():
    raw = b'{"messages": [{"role": "user", "content": "Hi"}], "repetition_penalty": 1e400}'
    assert (_error(raw).param, _error(raw).code) == ("repetition_penalty", "invalid_value")
    raw = (
        b'{"messages": [{"role": "user", "content": "Hi"}], "tools": [{"type": "function", "function": '
        b'{"name": "f", "parameters": {"type": "object", "properties": {"n": {"maximum": -1e999}}}}}]}'
    )
    assert _error(raw).param == "tools[0].function.parameters.properties.n.maximum"
