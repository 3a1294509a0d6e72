"""The engine interface: a blocking generator of deltas that ends with a Finish.

Engines run in a worker thread. `generate` yields `Delta`s as tokens are produced and then exactly
one `Finish`; it checks `cancel` between tokens and raises `EngineError("cancelled")` once it is set.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Delta:
    content: str = ""
    reasoning: str = ""
    # Protocol tool-call fragments: {"index", "id"?, "name"?, "arguments"?}.
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    tokens: int = 0
    # With the job's `logprobs`: one entry per token of `content` (protocol delta.logprobs).
    logprobs: list[dict[str, Any]] = field(default_factory=list)

    def empty(self) -> bool:
        return not (self.content or self.reasoning or self.tool_calls or self.tokens or self.logprobs)


@dataclass
class Finish:
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int
    reasoning_tokens: int = 0

    def usage(self) -> dict[str, int]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "reasoning_tokens": self.reasoning_tokens,
        }


class EngineError(Exception):
    """A job failure with a protocol error code."""

    def __init__(self, code: str, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.retryable = retryable


def cancelled() -> EngineError:
    return EngineError("cancelled", "the job was cancelled")


class Engine:
    name = "engine"
    # Announced in hello.features: "prompt" (raw-prompt jobs), "logprobs" (log probabilities).
    features: tuple[str, ...] = ()

    def generate(self, request: dict[str, Any], cancel: threading.Event) -> Iterator[Delta | Finish]:
        raise NotImplementedError

    def close(self) -> None:
        """Release resources (model handles, HTTP clients)."""


def token_entry(raw: bytes, logprob: float) -> dict[str, Any]:
    """A token's log-probability entry, as OpenAI's ChatCompletionTokenLogprob (without top_logprobs)."""
    return {"token": raw.decode("utf-8", errors="replace"), "logprob": float(logprob), "bytes": list(raw)}


def last_user_text(messages: list[dict[str, Any]]) -> str:
    for message in reversed(messages):
        if message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, list):  # content parts
                return " ".join(p.get("text", "") for p in content if isinstance(p, dict))
            return content or ""
    return ""


def wanted_tool(request: dict[str, Any]) -> tuple[bool, str | None]:
    """(must call a tool, forced function name) from tools + tool_choice."""
    tools = request.get("tools") or []
    choice = request.get("tool_choice")
    if not tools or choice == "none":
        return False, None
    if isinstance(choice, dict):
        return True, (choice.get("function") or {}).get("name")
    return choice == "required", None
