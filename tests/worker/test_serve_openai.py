"""`sogni-worker serve-openai`: the engine alone behind a minimal OpenAI-compatible server.

Also a second real upstream for the openai engine: one that sends reasoning, tool calls for
tool_choice "required", usage, and 4xx errors.
"""

import sys
import threading

import httpx
import openai
import pytest

from sogni_worker.engines import EngineError, Finish
from sogni_worker.engines.openai_engine import OpenAIEngine
from tests.support.processes import free_port, start_process, wait_until

TOOL = {
    "type": "function",
    "function": {
        "name": "lookup",
        "parameters": {"type": "object", "properties": {"term": {"type": "string"}}, "required": ["term"]},
    },
}

# Starts real sogni-worker processes.
pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def base_url():
    port = free_port()
    args = [sys.executable, "-m", "sogni_worker.cli", "serve-openai", "--engine", "scripted", "--port", str(port),
            "--scripted-rate", "0", "--scripted-tokens", "8", "--slots", "4"]  # fmt: skip
    process = start_process("serve-openai", args, {})
    base = f"http://127.0.0.1:{port}/v1"

    def ready():
        if not process.alive():
            raise RuntimeError(process.log())
        try:
            return httpx.get(f"{base}/models", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    wait_until(ready, timeout=30, what="serve-openai")
    yield base
    process.stop()
    assert process.popen.returncode == 0


def test_openai_sdk_streams_and_collects(base_url):
    client = openai.OpenAI(base_url=base_url, api_key="unused")
    assert [m.id for m in client.models.list()] == ["scripted"]
    stream = client.chat.completions.create(
        model="scripted", messages=[{"role": "user", "content": "kiwi please"}], stream=True,
        stream_options={"include_usage": True},
    )  # fmt: skip
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "kiwi tok1 tok2 tok3 tok4 tok5 tok6 tok7"
    assert chunks[-1].usage.completion_tokens == 8
    reply = client.chat.completions.create(
        model="scripted", messages=[{"role": "user", "content": "mango"}], max_tokens=3
    )
    assert reply.choices[0].message.content == "mango tok1 tok2"
    assert reply.choices[0].finish_reason == "length" and reply.usage.completion_tokens == 3


def test_bad_body_is_an_openai_shaped_400(base_url):
    response = httpx.post(f"{base_url}/chat/completions", content=b"{not json")
    assert response.status_code == 400 and response.json()["error"]["message"]
    assert httpx.get(f"{base_url}/nowhere").status_code == 404


def test_openai_engine_maps_reasoning_tools_usage_and_4xx(base_url):
    engine = OpenAIEngine(base_url=base_url, model="scripted")
    try:
        thinking = {
            "messages": [{"role": "user", "content": "ponder"}],
            "chat_template_kwargs": {"enable_thinking": True},
        }
        items = list(engine.generate(thinking, threading.Event()))
        assert "".join(d.reasoning for d in items[:-1]) == "think0 think1 "
        assert "".join(d.content for d in items[:-1]).startswith("ponder tok1")
        assert items[-1] == Finish("stop", items[-1].prompt_tokens, 10, 2)

        tools = {"messages": [{"role": "user", "content": "grep"}], "tools": [TOOL], "tool_choice": "required"}
        items = list(engine.generate(tools, threading.Event()))
        fragments = [f for d in items[:-1] for f in d.tool_calls]
        assert fragments[0]["name"] == "lookup" and fragments[0]["id"]
        assert "".join(f.get("arguments", "") for f in fragments) == '{"term": "grep"}'
        assert items[-1].finish_reason == "tool_calls"

        with pytest.raises(EngineError) as failure:
            list(engine.generate({"messages": []}, threading.Event()))
        assert failure.value.code == "invalid_request" and not failure.value.retryable
    finally:
        engine.close()


def test_serves_the_llama_cpp_engine_under_the_gguf_name():
    port = free_port()
    args = [sys.executable, "-m", "sogni_worker.cli", "serve-openai", "--engine", "llama-cpp", "--port", str(port),
            "--n-ctx", "512"]  # fmt: skip
    process = start_process("serve-openai-llama", args, {})
    base = f"http://127.0.0.1:{port}/v1"
    try:

        def ready():
            if not process.alive():
                raise RuntimeError(process.log())
            try:
                return httpx.get(f"{base}/models", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(ready, timeout=60, what="serve-openai llama-cpp")
        client = openai.OpenAI(base_url=base, api_key="unused")
        assert [m.id for m in client.models.list()] == ["SmolLM2-135M-Instruct.Q4_1"]
        reply = client.chat.completions.create(
            model="SmolLM2-135M-Instruct.Q4_1",
            messages=[{"role": "user", "content": "Hello!"}],
            max_tokens=3,
            temperature=0,
        )
        assert reply.choices[0].message.content and 1 <= reply.usage.completion_tokens <= 3
    finally:
        process.stop()
