"""Deterministic tokens at a fixed rate. For tests and benchmarks only; never a default.

Every reply starts with the first word of the last user message (the marker), so a benchmark can
check that each stream carries its own request's output and nothing else.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

from .base import Delta, Engine, EngineError, Finish, cancelled, last_user_text, token_entry, wanted_tool

WARNING = (
    "the scripted engine produces fixed, meaningless text and is for tests and benchmarks only; "
    "do not serve real users with it"
)


def sample_instance(schema: dict[str, Any], marker: str) -> Any:
    """A deterministic value matching a simple JSON schema (objects, arrays, scalars, enums)."""
    if "enum" in schema:
        return schema["enum"][0]
    if "const" in schema:
        return schema["const"]
    kind = schema.get("type", "object")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object":
        props = schema.get("properties") or {}
        return {name: sample_instance(sub, marker) for name, sub in props.items()}
    if kind == "array":
        return [sample_instance(schema.get("items") or {"type": "string"}, marker)]
    return {"string": marker, "integer": 1, "number": 1.5, "boolean": True, "null": None}.get(kind, marker)


def scripted_logprobs(text: str, top: int) -> list[dict[str, Any]]:
    """A fixed entry for a piece of text: logprob -0.25, alternatives `alt<i>` below it."""
    entry = token_entry(text.encode(), -0.25)
    entry["top_logprobs"] = [entry.copy()] + [token_entry(f"alt{i}".encode(), -2.0 - i) for i in range(1, top)]
    entry["top_logprobs"] = entry["top_logprobs"][:top]
    return [entry]


class ScriptedEngine(Engine):
    name = "scripted"
    features = ("logprobs", "prompt")

    def __init__(self, *, rate: float = 50.0, tokens: int = 16) -> None:
        if rate < 0 or tokens < 1:
            raise ValueError("scripted rate must be >= 0 and tokens >= 1")
        self.rate = rate
        self.tokens = tokens

    def _pieces(self, request: dict[str, Any], marker: str) -> tuple[list[tuple[str, Any]], str]:
        _, forced = wanted_tool(request)
        tools = request.get("tools") or []
        if tools and request.get("tool_choice") != "none":  # scripted: "auto" calls a tool too
            tool = next((t for t in tools if (t.get("function") or {}).get("name") == forced), tools[0])
            function = tool.get("function") or {}
            arguments = json.dumps(sample_instance(function.get("parameters") or {"type": "object"}, marker))
            chunks = [arguments[i : i + 4] for i in range(0, len(arguments), 4)] or [""]
            first = {"index": 0, "id": f"call_{marker[:16]}_0", "name": function.get("name", ""), "arguments": ""}
            return [("tool", first)] + [("tool", {"index": 0, "arguments": c}) for c in chunks], "tool_calls"
        fmt = (request.get("response_format") or {}).get("type")
        if fmt in ("json_object", "json_schema"):
            schema = ((request.get("response_format") or {}).get("json_schema") or {}).get("schema")
            text = json.dumps(sample_instance(schema, marker) if schema else {"marker": marker})
            return [("content", text[i : i + 4]) for i in range(0, len(text), 4)], "stop"
        words = [marker] + [f"tok{i}" for i in range(1, self.tokens)]
        return [("content", w if i == 0 else " " + w) for i, w in enumerate(words)], "stop"

    def generate(self, request: dict[str, Any], cancel: threading.Event) -> Iterator[Delta | Finish]:
        messages = request.get("messages") or []
        raw = request.get("prompt")
        if not messages and not raw:
            raise EngineError("invalid_request", "messages must not be empty")
        if raw:
            messages = [{"role": "user", "content": raw}]
            request = {k: v for k, v in request.items() if k not in ("tools", "response_format")}
        top = int(request.get("top_logprobs") or 0) if request.get("logprobs") else None
        max_tokens = int(request.get("max_tokens") or 16)
        words = last_user_text(messages).split()
        marker = words[0] if words else "scripted"
        prompt_tokens = sum(len(str(m.get("content") or "").split()) + 4 for m in messages)
        thinking = bool((request.get("chat_template_kwargs") or {}).get("enable_thinking"))
        pieces: list[tuple[str, Any]] = [("reasoning", f"think{i} ") for i in range(2)] if thinking else []
        body, finish_reason = self._pieces(request, marker)
        pieces += body
        if len(pieces) > max_tokens:
            pieces, finish_reason = pieces[:max_tokens], "length"
        interval = 1.0 / self.rate if self.rate else 0.0
        start = time.monotonic()
        reasoning_tokens = 0
        for n, (kind, value) in enumerate(pieces):
            # Paced against the start time so the rate holds however slow the consumer is.
            delay = start + n * interval - time.monotonic()
            if delay > 0 and cancel.wait(delay):
                raise cancelled()
            if cancel.is_set():
                raise cancelled()
            if kind == "reasoning":
                reasoning_tokens += 1
                yield Delta(reasoning=value, tokens=1)
            elif kind == "tool":
                yield Delta(tool_calls=[dict(value)], tokens=1)
            else:
                logprobs = scripted_logprobs(value, top) if top is not None else []
                yield Delta(content=value, tokens=1, logprobs=logprobs)
        yield Finish(finish_reason, prompt_tokens, len(pieces), reasoning_tokens)
