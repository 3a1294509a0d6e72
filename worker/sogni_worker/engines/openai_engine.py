"""Forward jobs to a local OpenAI-compatible server (llama-server, vLLM, SGLang, Ollama) over HTTP."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from typing import Any

import httpx

from .base import Delta, Engine, EngineError, Finish, cancelled

log = logging.getLogger(__name__)

_CONTEXT_HINTS = (
    "context length",
    "context_length",
    "maximum context",
    "context window",
    "exceeds the available context",
    "exceed_context_size",
    "n_ctx",
    "too many tokens",
    "prompt is too long",
)


def upstream_error(status: int | None, body: Any) -> EngineError:
    """Map an upstream HTTP status / error body (integer or string codes) to a protocol error."""
    message, code = "", None
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict):
            message = str(err.get("message") or err.get("detail") or "")
            code = err.get("code") if err.get("code") is not None else err.get("type")
        else:
            message = str(err)
    elif body:
        message = str(body)
    if status is None and isinstance(code, int):
        status = code
    text = f"{message} {code or ''}".lower()
    message = message or f"upstream HTTP {status}"
    if any(hint in text for hint in _CONTEXT_HINTS):
        return EngineError("context_length_exceeded", message)
    if status in (429, 503) or "overload" in text or "rate limit" in text:
        return EngineError("overloaded", message, retryable=True)
    if status is not None and 400 <= status < 500 and status not in (401, 403, 408):
        return EngineError("invalid_request", message)
    # 401/403 (our upstream key), 408, 5xx and unknown: not the request's fault; another worker may do.
    return EngineError("engine_error", message, retryable=True)


CHAT_ONLY = ("tools", "tool_choice", "parallel_tool_calls", "response_format", "chat_template_kwargs")


def upstream_body(request: dict[str, Any], model: str) -> dict[str, Any]:
    body = {k: v for k, v in request.items() if k not in ("model", "stream", "stream_options", "n", "user")}
    body.update(model=model, stream=True, stream_options={"include_usage": True})
    if "prompt" in body:  # a raw-prompt job goes to /completions, whose `logprobs` counts alternatives
        for name in CHAT_ONLY:
            body.pop(name, None)
        logprobs, top = body.pop("logprobs", None), body.pop("top_logprobs", None)
        if logprobs:
            body["logprobs"] = top or 0
    if "repetition_penalty" in body:  # llama-server / llama-cpp-python spell it repeat_penalty
        body.setdefault("repeat_penalty", body["repetition_penalty"])
    return body


def _entry(token: str, logprob: Any, raw: Any = None) -> dict[str, Any]:
    return {
        "token": token,
        "logprob": min(float(logprob), 0.0),
        "bytes": raw if raw is not None else list(token.encode()),
    }


def upstream_logprobs(logprobs: Any) -> list[dict[str, Any]]:
    """An upstream choice's log probabilities as protocol entries: chat's `content` list, or a legacy
    completion's `tokens` / `token_logprobs` / `top_logprobs` lists."""
    if not isinstance(logprobs, dict):
        return []
    entries = []
    if isinstance(logprobs.get("content"), list):
        for item in logprobs["content"]:
            entry = _entry(item["token"], item["logprob"], item.get("bytes"))
            entry["top_logprobs"] = [
                _entry(t["token"], t["logprob"], t.get("bytes")) for t in item.get("top_logprobs") or []
            ]
            entries.append(entry)
        return entries
    tops = logprobs.get("top_logprobs") or []
    pairs = zip(logprobs.get("tokens") or [], logprobs.get("token_logprobs") or [], strict=False)
    for i, (token, logprob) in enumerate(pairs):
        entry = _entry(token, logprob if logprob is not None else 0.0)
        alternatives = tops[i] if i < len(tops) and isinstance(tops[i], dict) else {}
        entry["top_logprobs"] = [_entry(t, lp) for t, lp in sorted(alternatives.items(), key=lambda kv: -kv[1])]
        entries.append(entry)
    return entries


class OpenAIEngine(Engine):
    name = "openai"
    features = ("logprobs", "prompt")

    def __init__(self, *, base_url: str, model: str | None = None, api_key: str | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.model = model
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.client = httpx.Client(base_url=self.base_url, headers=headers, timeout=httpx.Timeout(600.0, connect=10.0))

    def close(self) -> None:
        self.client.close()

    def generate(self, request: dict[str, Any], cancel: threading.Event) -> Iterator[Delta | Finish]:
        body = upstream_body(request, self.model or request.get("model") or "default")
        done = threading.Event()
        try:
            path = "/completions" if "prompt" in request else "/chat/completions"
            with self.client.stream("POST", path, json=body) as response:
                if response.status_code >= 400:
                    raw = response.read()
                    try:
                        parsed: Any = json.loads(raw)
                    except ValueError:
                        parsed = raw.decode(errors="replace")[:500]
                    raise upstream_error(response.status_code, parsed)

                def abort_on_cancel() -> None:
                    # Unblocks a read stalled on upstream prompt processing.
                    while not done.is_set():
                        if cancel.wait(0.05):
                            response.close()
                            return

                threading.Thread(target=abort_on_cancel, daemon=True).start()
                yield from self._relay(response, request, cancel)
        except EngineError:
            raise
        except (httpx.HTTPError, RuntimeError, OSError) as exc:
            if cancel.is_set():
                raise cancelled() from exc
            raise EngineError("engine_error", f"upstream connection failed: {exc}", retryable=True) from exc
        finally:
            done.set()

    @staticmethod
    def _estimate_prompt(request: dict[str, Any]) -> int:
        """For servers that send no usage: about 4 characters a token, plus a few per message."""
        if "prompt" in request:
            return len(request["prompt"]) // 4 + 1
        return sum(len(json.dumps(m.get("content") or "")) // 4 + 4 for m in request.get("messages") or [])

    def _relay(
        self, response: httpx.Response, request: dict[str, Any], cancel: threading.Event
    ) -> Iterator[Delta | Finish]:
        finish_reason, usage, chunks, reasoning_chunks, saw_tools, ended = None, None, 0, 0, False, False
        for line in response.iter_lines():
            if cancel.is_set():
                raise cancelled()
            if not line.startswith("data:"):
                continue
            data = line[5:].strip()
            if data == "[DONE]":
                ended = True
                break
            try:
                chunk = json.loads(data)
            except ValueError:
                continue
            if chunk.get("error"):
                raise upstream_error(None, chunk)
            usage = chunk.get("usage") or usage
            for choice in chunk.get("choices") or []:
                delta = choice.get("delta") or {}
                out = Delta(
                    content=delta.get("content") or choice.get("text") or "",
                    reasoning=delta.get("reasoning_content") or delta.get("reasoning") or "",
                    logprobs=upstream_logprobs(choice.get("logprobs")) if request.get("logprobs") else [],
                )
                for call in delta.get("tool_calls") or []:
                    function = call.get("function") or {}
                    fragment: dict[str, Any] = {"index": call.get("index", 0)}
                    if call.get("id"):
                        fragment["id"] = call["id"]
                    if function.get("name"):
                        fragment["name"] = function["name"]
                    if function.get("arguments"):
                        fragment["arguments"] = function["arguments"]
                    out.tool_calls.append(fragment)
                    saw_tools = True
                if not out.empty():
                    out.tokens = 1
                    chunks += 1
                    reasoning_chunks += 1 if out.reasoning else 0
                    yield out
                finish_reason = choice.get("finish_reason") or finish_reason
        if cancel.is_set():
            raise cancelled()
        if not ended and finish_reason is None:
            # e.g. llama-cpp-python's server drops a stream whose prompt overflows the context
            raise EngineError("engine_error", "the upstream server ended the stream without finishing", retryable=True)
        if finish_reason != "length":
            finish_reason = "tool_calls" if saw_tools or finish_reason == "function_call" else "stop"
        usage = usage or {}
        details = usage.get("completion_tokens_details") or {}
        yield Finish(
            finish_reason,
            int(usage.get("prompt_tokens") or self._estimate_prompt(request)),
            int(usage.get("completion_tokens") or chunks),
            int(details.get("reasoning_tokens") or reasoning_chunks),
        )
