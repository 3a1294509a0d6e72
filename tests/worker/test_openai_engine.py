"""The openai engine against a real OpenAI-compatible server: llama-cpp-python's own server on SmolLM2."""

import json
import sys
import threading

import httpx
import jsonschema
import pytest

from sogni_worker.engines import Delta, EngineError, Finish, default_model_path
from sogni_worker.engines.openai_engine import OpenAIEngine, upstream_error
from tests.support.factories import WEATHER
from tests.support.processes import free_port, start_process, wait_until


@pytest.fixture(scope="module")
def server():
    port = free_port()
    args = [sys.executable, "-m", "llama_cpp.server", "--model", str(default_model_path()), "--host", "127.0.0.1",
            "--port", str(port), "--n_ctx", "1024", "--n_threads", "2", "--verbose", "False",
            "--chat_format", "chatml-function-calling"]  # fmt: skip
    process = start_process("llama-cpp-server", args, {"OMP_WAIT_POLICY": "PASSIVE"})
    base = f"http://127.0.0.1:{port}/v1"

    def ready():
        if not process.alive():
            raise RuntimeError(f"llama_cpp.server exited:\n{process.log()}")
        try:
            return httpx.get(f"{base}/models", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    wait_until(ready, timeout=120, interval=0.2, what="llama_cpp.server")
    yield base
    process.stop()


@pytest.fixture
def engine(server):
    engine = OpenAIEngine(base_url=server, model="smollm2")
    yield engine
    engine.close()


def run(engine, request, cancel=None):
    items = list(engine.generate(request, cancel or threading.Event()))
    assert isinstance(items[-1], Finish) and all(isinstance(d, Delta) for d in items[:-1])
    return items[:-1], items[-1]


@pytest.mark.e2e  # llama_cpp.server runs as a process
def test_streams_real_text_with_usage(engine):
    request = {"messages": [{"role": "user", "content": "Name a colour."}], "max_tokens": 6, "temperature": 0,
               "top_k": 40, "min_p": 0.05, "repetition_penalty": 1.1}  # fmt: skip
    deltas, finish = run(engine, request)
    assert any(c.isalpha() for c in "".join(d.content for d in deltas))
    assert len(deltas) >= 2
    assert finish.finish_reason in ("stop", "length")
    assert 1 <= finish.completion_tokens <= 6
    assert finish.prompt_tokens > 0


@pytest.mark.e2e  # llama_cpp.server runs as a process
def test_named_tool_call_streams_as_fragments(engine):
    request = {
        "messages": [{"role": "user", "content": "What is the weather in Paris?"}],
        "max_tokens": 96,
        "temperature": 0,
        "tools": [WEATHER],
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
    }
    deltas, finish = run(engine, request)
    fragments = [f for d in deltas for f in d.tool_calls]
    assert finish.finish_reason == "tool_calls"
    assert fragments[0]["id"] and fragments[0]["name"] == "get_weather"
    arguments = json.loads("".join(f.get("arguments", "") for f in fragments))
    jsonschema.validate(arguments, WEATHER["function"]["parameters"])


@pytest.mark.e2e  # llama_cpp.server runs as a process
def test_a_stream_the_server_drops_is_an_error_not_an_empty_reply(engine):
    # llama-cpp-python's server answers a streamed context overflow with 200 and an empty stream.
    with pytest.raises(EngineError) as failure:
        run(engine, {"messages": [{"role": "user", "content": "word " * 1500}], "max_tokens": 4})
    assert failure.value.code == "engine_error"


@pytest.mark.e2e  # llama_cpp.server runs as a process
def test_cancel_stops_the_upstream_stream(engine):
    cancel = threading.Event()
    generation = engine.generate(
        {"messages": [{"role": "user", "content": "Tell me a long story."}], "max_tokens": 400}, cancel
    )
    assert isinstance(next(generation), Delta)
    cancel.set()
    with pytest.raises(EngineError) as failure:
        for _ in generation:
            pass
    assert failure.value.code == "cancelled"


def test_unreachable_server_is_a_retryable_engine_error():
    engine = OpenAIEngine(base_url=f"http://127.0.0.1:{free_port()}/v1")
    with pytest.raises(EngineError) as failure:
        run(engine, {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4})
    assert failure.value.code == "engine_error" and failure.value.retryable


@pytest.mark.parametrize(
    ("status", "body", "code", "retryable"),
    [
        (400, {"error": {"message": "bad temperature", "type": "invalid_request_error", "code": 400}},
         "invalid_request", False),
        (400, {"error": {"message": "This model's maximum context length is 1024 tokens.", "param": "messages",
                         "type": "invalid_request_error", "code": "context_length_exceeded"}},
         "context_length_exceeded", False),
        (None, {"error": {"message": "the request exceeds the available context size", "code": 400,
                          "type": "exceed_context_size_error"}}, "context_length_exceeded", False),
        (429, {"error": "rate limit reached"}, "overloaded", True),
        (503, {"object": "error", "message": "server busy", "code": 503}, "overloaded", True),
        (None, {"error": {"message": "slot unavailable", "code": 503}}, "overloaded", True),
        (500, "Internal Server Error", "engine_error", True),
        (401, {"error": {"message": "invalid api key"}}, "engine_error", True),
    ],
)  # fmt: skip
def test_upstream_errors_map_to_protocol_codes(status, body, code, retryable):
    # The shapes llama-server, vLLM/SGLang (integer codes) and Ollama (string errors) send.
    error = upstream_error(status, body)
    assert (error.code, error.retryable) == (code, retryable)
    assert error.message


def test_reasoning_fields_of_either_name_become_reasoning():
    # vLLM/SGLang/llama-server send `reasoning_content`; newer vLLM and Ollama send `reasoning`.
    chunks = [
        {"choices": [{"index": 0, "delta": {"role": "assistant", "reasoning_content": "Think"}}]},
        {"choices": [{"index": 0, "delta": {"reasoning": "ing."}}]},
        {"choices": [{"index": 0, "delta": {"content": "Answer"}, "finish_reason": "stop"}]},
        {"choices": [], "usage": {"prompt_tokens": 7, "completion_tokens": 3,
                                  "completion_tokens_details": {"reasoning_tokens": 2}}},
    ]  # fmt: skip
    body = "".join(f"data: {json.dumps(c)}\n\n" for c in chunks) + "data: [DONE]\n\n"
    response = httpx.Response(200, content=body.encode())
    items = list(OpenAIEngine(base_url="http://127.0.0.1:1/v1")._relay(response, {}, threading.Event()))
    assert [(d.reasoning, d.content) for d in items[:-1]] == [("Think", ""), ("ing.", ""), ("", "Answer")]
    assert items[-1] == Finish("stop", 7, 3, 2)
