"""The in-process llama.cpp engine on the real SmolLM2-135M GGUF (2 CPU cores: few, short generations)."""

import json
import threading

import jsonschema
import pytest

from sogni_worker.engines import Delta, EngineError, Finish, default_model_path
from sogni_worker.engines.llama_cpp_engine import LlamaCppEngine
from tests.support.factories import TIME, WEATHER

pytestmark = pytest.mark.engine


@pytest.fixture(scope="module")
def engine():
    engine = LlamaCppEngine(model_path=default_model_path(), n_ctx=1024, n_threads=2)
    yield engine
    engine.close()


def run(engine, request, cancel=None):
    items = list(engine.generate(request, cancel or threading.Event()))
    deltas, finish = items[:-1], items[-1]
    assert isinstance(finish, Finish) and all(isinstance(d, Delta) for d in deltas)
    assert sum(d.tokens for d in deltas) == finish.completion_tokens
    return deltas, finish


def tool_call(deltas):
    fragments = [f for d in deltas for f in d.tool_calls]
    assert fragments and fragments[0]["id"].startswith("call_")
    assert all(f["index"] == 0 for f in fragments)
    return fragments[0]["name"], json.loads("".join(f.get("arguments", "") for f in fragments))


def test_streams_real_text_token_by_token(engine):
    deltas, finish = run(
        engine, {"messages": [{"role": "user", "content": "Name a colour."}], "max_tokens": 6, "temperature": 0}
    )
    text = "".join(d.content for d in deltas)
    assert any(c.isalpha() for c in text)
    assert len(deltas) >= 2  # streamed, not one lump
    assert finish.prompt_tokens > 5 and 1 <= finish.completion_tokens <= 6
    assert finish.finish_reason in ("stop", "length")


def test_named_tool_choice_gives_a_parseable_call(engine):
    request = {
        "messages": [{"role": "user", "content": "What is the weather in Paris?"}],
        "max_tokens": 96,
        "temperature": 0,
        "tools": [WEATHER, TIME],
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
    }
    deltas, finish = run(engine, request)
    name, arguments = tool_call(deltas)
    assert finish.finish_reason == "tool_calls"
    assert name == "get_weather"
    jsonschema.validate(arguments, WEATHER["function"]["parameters"])


def test_required_tool_choice_picks_an_offered_function(engine):
    request = {
        "messages": [{"role": "user", "content": "What time is it in Tokyo?"}],
        "max_tokens": 96,
        "temperature": 0,
        "tools": [WEATHER, TIME],
        "tool_choice": "required",
    }
    deltas, finish = run(engine, request)
    name, arguments = tool_call(deltas)
    assert finish.finish_reason == "tool_calls"
    tool = {"get_weather": WEATHER, "get_time": TIME}[name]
    jsonschema.validate(arguments, tool["function"]["parameters"])


def test_json_schema_response_parses_and_matches(engine):
    schema = {
        "type": "object",
        "properties": {
            "name": {"type": "string", "maxLength": 12},
            "colour": {"enum": ["red", "green", "blue"]},
            "tall": {"type": "boolean"},
        },
        "required": ["name", "colour", "tall"],
        "additionalProperties": False,
    }
    request = {
        "messages": [{"role": "user", "content": "Describe a person as JSON."}],
        "max_tokens": 96,
        "temperature": 0,
        "response_format": {"type": "json_schema", "json_schema": {"name": "person", "schema": schema}},
    }
    deltas, finish = run(engine, request)
    assert finish.finish_reason == "stop"
    jsonschema.validate(json.loads("".join(d.content for d in deltas)), schema)


def test_cancel_stops_generation_between_tokens(engine):
    cancel = threading.Event()
    request = {"messages": [{"role": "user", "content": "Tell me a long story."}], "max_tokens": 500}
    generation = engine.generate(request, cancel)
    first = next(generation)
    assert isinstance(first, Delta)
    cancel.set()
    with pytest.raises(EngineError) as failure:
        for _ in generation:
            pass
    assert failure.value.code == "cancelled"
    # The handle went back to the pool: the next job runs.
    _, finish = run(engine, {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2})
    assert finish.completion_tokens <= 2


def test_prompt_over_the_context_window_is_refused(engine):
    long_prompt = "word " * 1500
    with pytest.raises(EngineError) as failure:
        run(engine, {"messages": [{"role": "user", "content": long_prompt}], "max_tokens": 4})
    assert failure.value.code == "context_length_exceeded"


def test_unknown_forced_tool_is_an_invalid_request(engine):
    request = {
        "messages": [{"role": "user", "content": "Hi"}],
        "tools": [WEATHER],
        "tool_choice": {"type": "function", "function": {"name": "launch_rockets"}},
    }
    with pytest.raises(EngineError) as failure:
        run(engine, request)
    assert failure.value.code == "invalid_request"


# A Qwen2.5-style template: tools in the system turn, calls as <tool_call> JSON, results as <tool_response>.
HERMES_TEMPLATE = """
{%- if tools %}<|im_start|>system
{% if messages[0].role == 'system' %}{{ messages[0].content }}{% else %}You are a helpful assistant.{% endif %}

# Tools

You are provided with function signatures within <tools></tools> XML tags:
<tools>
{% for tool in tools %}{{ tool | tojson }}
{% endfor %}</tools>

For each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:
<tool_call>
{"name": <function-name>, "arguments": <args-json-object>}
</tool_call><|im_end|>
{% elif messages[0].role == 'system' %}<|im_start|>system
{{ messages[0].content }}<|im_end|>
{% endif %}
{%- for message in messages %}
{%- if message.role == 'user' or (message.role == 'assistant' and not message.tool_calls) %}
<|im_start|>{{ message.role }}
{{ message.content }}<|im_end|>
{% elif message.role == 'assistant' %}<|im_start|>assistant
{% if message.content %}{{ message.content }}
{% endif %}{% for call in message.tool_calls %}<tool_call>
{"name": "{{ call.function.name }}", "arguments": {{ call.function.arguments | tojson }}}
</tool_call>{% endfor %}<|im_end|>
{% elif message.role == 'tool' %}<|im_start|>user
<tool_response>
{{ message.content }}
</tool_response><|im_end|>
{% endif %}
{%- endfor %}
{%- if add_generation_prompt %}<|im_start|>assistant
{% endif %}
"""

HISTORY = [
    {"role": "user", "content": "What is the weather in Paris?"},
    {"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
    {"role": "tool", "tool_call_id": "call_1", "content": "Sunny, 21 C"},
]  # fmt: skip


@pytest.fixture(scope="module")
def hermes_engine():
    engine = LlamaCppEngine(model_path=default_model_path(), n_ctx=1024, n_threads=2, chat_template=HERMES_TEMPLATE)
    yield engine
    engine.close()


def test_a_template_that_speaks_tools_gets_them_through_the_template(hermes_engine):
    request = {"messages": HISTORY[:1], "tools": [WEATHER, TIME], "tool_choice": "required"}
    prompt = hermes_engine.renderer.render(request)
    assert "<tools>" in prompt and '"name": "get_time"' in prompt and "functions." not in prompt
    deltas, finish = run(hermes_engine, {**request, "max_tokens": 96, "temperature": 0})
    name, arguments = tool_call(deltas)
    assert finish.finish_reason == "tool_calls"
    jsonschema.validate(arguments, {"get_weather": WEATHER, "get_time": TIME}[name]["function"]["parameters"])


def test_tool_history_renders_in_both_styles(engine, hermes_engine):
    request = {"messages": HISTORY, "tools": [WEATHER], "max_tokens": 3}
    native = hermes_engine.renderer.render(request)
    assert '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}' in native
    assert "<tool_response>\nSunny, 21 C" in native
    flat = engine.renderer.render(request)
    assert 'functions.get_weather:\n{"city": "Paris"}' in flat and "functions.get_weather returned:\nSunny" in flat
    # The plain template has no tool support; the conversation still continues.
    deltas, finish = run(engine, {**request, "tool_choice": "none"})
    assert finish.completion_tokens >= 1


def test_auto_tool_choice_answers_or_calls_well_formed(engine):
    request = {"messages": HISTORY[:1], "max_tokens": 96, "temperature": 0, "tools": [WEATHER], "tool_choice": "auto"}
    deltas, finish = run(engine, request)
    if any(d.tool_calls for d in deltas):
        name, arguments = tool_call(deltas)
        assert finish.finish_reason == "tool_calls" and name == "get_weather"
        jsonschema.validate(arguments, WEATHER["function"]["parameters"])
    else:
        text = "".join(d.content for d in deltas)
        assert text and not text.startswith("message:") and finish.finish_reason in ("stop", "length")
