"""Replies and stream chunks in OpenAI's exact shapes, and the SSE framing they travel in.

ChatCompletionAccumulator is fed the worker protocol's `delta` frames: it returns the stream
chunks to send for each frame and remembers everything for the final `chat.completion` object,
so streaming and non-streaming replies are built from the same frames.
"""

import hashlib
import json
import secrets
import string
import time
from collections.abc import Mapping
from dataclasses import dataclass

from inference.openai.reasoning import ThinkSplitter
from sogni_platform.exceptions import ApiError

SSE_DONE = b"data: [DONE]\n\n"
SSE_KEEPALIVE = b": keep-alive\n\n"
FINISH_REASONS = ("stop", "length", "tool_calls")
_ALPHABET = string.ascii_letters + string.digits


def _random(size: int) -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(size))


def completion_id() -> str:
    return f"chatcmpl-{_random(29)}"


def text_completion_id() -> str:
    return f"cmpl-{_random(29)}"


def tool_call_id() -> str:
    return f"call_{_random(24)}"


def system_fingerprint(*parts: str) -> str:
    """`fp_` + a short hash of what determines the backend (e.g. model id, engine, version)."""
    digest = hashlib.sha256("\x1f".join(parts or ("sogni",)).encode()).hexdigest()
    return f"fp_{digest[:10]}"


def sse_event(obj: Mapping) -> bytes:
    return b"data: " + json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8") + b"\n\n"


def sse_error(error: ApiError) -> bytes:
    return sse_event(error.body())


def usage_payload(
    *, prompt_tokens: int, completion_tokens: int, reasoning_tokens: int = 0, cost: dict | None = None
) -> dict:
    usage = {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "completion_tokens_details": {"reasoning_tokens": reasoning_tokens},
    }
    if cost is not None:
        usage["cost"] = cost
    return usage


@dataclass
class _ToolCall:
    id: str
    name: str
    arguments: str = ""


class ChatCompletionAccumulator:
    """Turns protocol delta frames into stream chunks and the final completion object.

    `split_think` runs content through ThinkSplitter (for reasoning models whose engine leaves
    <think> tags in the text); `in_think` says the template already opened <think> in the prompt.
    """

    def __init__(
        self,
        *,
        model: str,
        include_usage: bool = False,
        split_think: bool = False,
        in_think: bool = False,
        id: str | None = None,
        created: int | None = None,
        fingerprint: str | None = None,
        logprobs: bool = False,
    ):
        self.id = id or completion_id()
        # With `logprobs`: every content token's entry (OpenAI's ChatCompletionTokenLogprob), as relayed.
        self.logprobs: list[dict] | None = [] if logprobs else None
        self.model = model
        self.created = created if created is not None else int(time.time())
        self.system_fingerprint = fingerprint or system_fingerprint(model)
        self.include_usage = include_usage
        self.content: list[str] = []
        self.reasoning: list[str] = []
        self.tool_calls: dict[int, _ToolCall] = {}
        self.tokens = 0  # completion tokens relayed, as the frames reported them
        self._splitter = ThinkSplitter(in_think=in_think) if split_think else None
        self._role_sent = False

    def chunk(self, delta: dict, *, finish_reason: str | None = None) -> dict:
        chunk = {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "system_fingerprint": self.system_fingerprint,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
        }
        if self.include_usage:
            chunk["usage"] = None
        return chunk

    def role_chunk(self, *, content: str | None = "") -> dict:
        """The first chunk; OpenAI's content is null there when the reply opens with a tool call."""
        self._role_sent = True
        return self.chunk({"role": "assistant", "content": content})

    def _text_chunks(self, reasoning: str, content: str) -> list[dict]:
        chunks = []
        if reasoning:
            self.reasoning.append(reasoning)
            chunks.append(self.chunk({"reasoning_content": reasoning}))
        if content:
            self.content.append(content)
            chunks.append(self.chunk({"content": content}))
        return chunks

    def _tool_call_chunk(self, fragment: Mapping) -> dict:
        index = int(fragment.get("index", 0))
        arguments = fragment.get("arguments") or ""
        call = self.tool_calls.get(index)
        if call is None:
            call = self.tool_calls[index] = _ToolCall(id=fragment.get("id") or tool_call_id(), name="")
            call.name = fragment.get("name") or ""
            call.arguments = arguments
            entry = {
                "index": index,
                "id": call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": arguments},
            }
        else:
            call.arguments += arguments
            entry = {"index": index, "function": {"arguments": arguments}}
        return self.chunk({"tool_calls": [entry]})

    def feed(self, frame: Mapping) -> list[dict]:
        """The stream chunks for one delta frame (the role chunk first, once)."""
        opens_with_call = bool(frame.get("tool_calls")) and not frame.get("content") and not frame.get("reasoning")
        chunks = [] if self._role_sent else [self.role_chunk(content=None if opens_with_call else "")]
        self.tokens += int(frame.get("tokens") or 0)
        reasoning = frame.get("reasoning") or ""
        content = frame.get("content") or ""
        if self._splitter is not None and content:
            split_reasoning, content = self._splitter.feed(content)
            reasoning += split_reasoning
        text_chunks = self._text_chunks(reasoning, content)
        entries = frame.get("logprobs") if self.logprobs is not None else None
        if entries and self.logprobs is not None:
            self.logprobs.extend(entries)
            if not text_chunks or "content" not in text_chunks[-1]["choices"][0]["delta"]:
                text_chunks.append(self.chunk({"content": ""}))
            text_chunks[-1]["choices"][0]["logprobs"] = {"content": list(entries), "refusal": None}
        chunks += text_chunks
        for fragment in frame.get("tool_calls") or ():
            chunks.append(self._tool_call_chunk(fragment))
        return chunks

    def finish_reason(self, reason: str) -> str:
        if reason not in FINISH_REASONS:
            reason = "stop"
        return "tool_calls" if self.tool_calls and reason == "stop" else reason

    def finish(self, *, finish_reason: str, usage: dict | None = None) -> list[dict]:
        """The closing chunks: held-back text, the finish chunk, and the usage chunk when asked for."""
        chunks = [] if self._role_sent else [self.role_chunk()]
        if self._splitter is not None:
            chunks += self._text_chunks(*self._splitter.flush())
        chunks.append(self.chunk({}, finish_reason=self.finish_reason(finish_reason)))
        if self.include_usage and usage is not None:
            chunks.append(self.usage_chunk(usage))
        return chunks

    def usage_chunk(self, usage: dict) -> dict:
        chunk = self.chunk({})
        chunk["choices"] = []
        chunk["usage"] = usage
        return chunk

    def message(self) -> dict:
        if self._splitter is not None:
            self._text_chunks(*self._splitter.flush())
        content = "".join(self.content)
        message: dict = {
            "role": "assistant",
            "content": None if self.tool_calls and not content else content,
            "refusal": None,
        }
        if self.tool_calls:
            message["tool_calls"] = [
                {"id": call.id, "type": "function", "function": {"name": call.name, "arguments": call.arguments}}
                for _, call in sorted(self.tool_calls.items())
            ]
        reasoning = "".join(self.reasoning)
        if reasoning:
            message["reasoning_content"] = reasoning
        return message

    def completion(self, *, finish_reason: str, usage: dict | None = None) -> dict:
        """The non-streaming `chat.completion` object."""
        completion = {
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.model,
            "system_fingerprint": self.system_fingerprint,
            "choices": [
                {
                    "index": 0,
                    "message": self.message(),
                    "logprobs": None if self.logprobs is None else {"content": self.logprobs, "refusal": None},
                    "finish_reason": self.finish_reason(finish_reason),
                }
            ],
        }
        if usage is not None:
            completion["usage"] = usage
        return completion


def legacy_logprobs(entries: list[dict], *, offset: int) -> dict:
    """Chat-style token entries as a legacy completion's `logprobs` (text offsets from `offset`)."""
    tokens, offsets = [], []
    for entry in entries:
        tokens.append(entry["token"])
        offsets.append(offset)
        offset += len(entry["token"])
    return {
        "tokens": tokens,
        "token_logprobs": [entry["logprob"] for entry in entries],
        "top_logprobs": [
            {top["token"]: top["logprob"] for top in entry.get("top_logprobs") or []} for entry in entries
        ],
        "text_offset": offsets,
    }


class TextCompletionAccumulator:
    """ChatCompletionAccumulator's counterpart for legacy completions (`text_completion` objects):
    the text, and with `logprobs` each token's entry, from the same delta frames."""

    def __init__(
        self,
        *,
        model: str,
        include_usage: bool = False,
        id: str | None = None,
        created: int | None = None,
        logprobs: bool = False,
        **_: object,
    ):
        self.id = id or text_completion_id()
        self.model = model
        self.created = created if created is not None else int(time.time())
        self.system_fingerprint = system_fingerprint(model)
        self.include_usage = include_usage
        self.text: list[str] = []
        self.offset = 0  # characters of the tokens whose log probabilities were relayed: the next text_offset
        self.tokens = 0
        self.logprobs: list[dict] | None = [] if logprobs else None

    def chunk(self, text: str, *, finish_reason: str | None = None, logprobs: dict | None = None) -> dict:
        chunk = {
            "id": self.id,
            "object": "text_completion",
            "created": self.created,
            "model": self.model,
            "system_fingerprint": self.system_fingerprint,
            "choices": [{"text": text, "index": 0, "logprobs": logprobs, "finish_reason": finish_reason}],
        }
        return chunk  # no `usage: null` before the usage chunk: CreateCompletionResponse's usage is not nullable

    def feed(self, frame: Mapping) -> list[dict]:
        self.tokens += int(frame.get("tokens") or 0)
        text = frame.get("content") or ""
        entries = frame.get("logprobs") if self.logprobs is not None else None
        logprobs = None
        if entries and self.logprobs is not None:
            logprobs = legacy_logprobs(entries, offset=self.offset)
            self.offset += sum(len(entry["token"]) for entry in entries)
            self.logprobs.extend(entries)
        self.text.append(text)
        return [self.chunk(text, logprobs=logprobs)] if text or logprobs else []

    @staticmethod
    def finish_reason(reason: str) -> str:
        return reason if reason in ("stop", "length") else "stop"

    def finish(self, *, finish_reason: str, usage: dict | None = None) -> list[dict]:
        chunks = [self.chunk("", finish_reason=self.finish_reason(finish_reason))]
        if self.include_usage and usage is not None:
            usage_chunk = self.chunk("")
            usage_chunk["choices"] = []
            usage_chunk["usage"] = usage
            chunks.append(usage_chunk)
        return chunks

    def completion(self, *, finish_reason: str, usage: dict | None = None) -> dict:
        completion = self.chunk(
            "".join(self.text),
            finish_reason=self.finish_reason(finish_reason),
            logprobs=None if self.logprobs is None else legacy_logprobs(self.logprobs, offset=0),
        )
        if usage is not None:
            completion["usage"] = usage
        return completion
