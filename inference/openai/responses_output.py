"""The Responses API's answer in OpenAI's shapes: the `response` object and its stream events.

ResponseWriter is fed the stream chunks ChatCompletionAccumulator makes from the worker protocol's
delta frames (so the <think> split, tool-call ids and token counts are the chat path's own) and
turns them into output items (`reasoning`, `message`, `function_call`) and the events that build
them, each with its `sequence_number`. Streaming and non-streaming answers come from the same feed.
"""

import copy
import json
import secrets
import time
from collections.abc import Mapping

from sogni_platform.exceptions import ApiError

# ResponseError.code is an enum in OpenAI's schema; the platform's own code travels in the `error` event.
RESPONSE_ERROR_CODES = ("server_error", "rate_limit_exceeded")


def _id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(24)}"


def response_id() -> str:
    return _id("resp")


def sse_response_event(event: Mapping) -> bytes:
    """One event as OpenAI streams it: its type on the `event:` line, the object on `data:`."""
    data = json.dumps(event, separators=(",", ":"), ensure_ascii=False)
    return f"event: {event['type']}\ndata: {data}\n\n".encode()


def response_usage(usage: Mapping) -> dict:
    """The chat usage payload (usage_payload) in the Responses API's names, with our `cost`."""
    out = {
        "input_tokens": usage["prompt_tokens"],
        "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
        "output_tokens": usage["completion_tokens"],
        "output_tokens_details": {"reasoning_tokens": usage["completion_tokens_details"]["reasoning_tokens"]},
        "total_tokens": usage["total_tokens"],
    }
    if "cost" in usage:
        out["cost"] = usage["cost"]
    return out


class ResponseWriter:
    """One response's output items and events, from chat stream chunks to the final object."""

    def __init__(
        self,
        *,
        id: str,
        model: str,
        echo: Mapping,
        store: bool,
        previous_response_id: str | None,
        max_output_tokens: int | None,
        created_at: int | None = None,
    ):
        self.id = id
        self.model = model
        self.echo = echo
        self.store = store
        self.previous_response_id = previous_response_id
        self.max_output_tokens = max_output_tokens
        self.created_at = created_at if created_at is not None else int(time.time())
        self.items: list[dict] = []
        self.sequence = 0
        self._open: dict | None = None  # the item being written
        self._calls: dict[int, dict] = {}  # function_call items by the chat tool-call index

    # The response object

    def response(
        self, *, status: str, usage: dict | None = None, error: dict | None = None, incomplete: dict | None = None
    ) -> dict:
        echo = self.echo
        response = {
            "id": self.id,
            "object": "response",
            "created_at": self.created_at,
            "status": status,
            "completed_at": int(time.time()) if status == "completed" else None,
            "error": error,
            "incomplete_details": incomplete,
            "instructions": echo.get("instructions"),
            "max_output_tokens": self.max_output_tokens,
            "model": self.model,
            "output": copy.deepcopy(self.items),
            "parallel_tool_calls": echo.get("parallel_tool_calls", True),
            "previous_response_id": self.previous_response_id,
            "reasoning": copy.deepcopy(echo.get("reasoning") or {"effort": None, "summary": None}),
            "store": self.store,
            "temperature": echo.get("temperature"),
            "text": copy.deepcopy(echo.get("text") or {"format": {"type": "text"}}),
            "tool_choice": copy.deepcopy(echo.get("tool_choice", "auto")),
            "tools": copy.deepcopy(echo.get("tools") or []),
            "top_p": echo.get("top_p"),
            "truncation": "disabled",
            "metadata": copy.deepcopy(echo.get("metadata") or {}),
        }
        if usage is not None:  # OpenAI's schema has no null usage: absent until the response ends
            response["usage"] = usage
        if echo.get("user") is not None:
            response["user"] = echo["user"]
        return response

    def assistant_message(self) -> dict:
        """This answer as the chat message a later response's conversation continues from."""
        text = "".join(part["text"] for item in self.items if item["type"] == "message" for part in item["content"])
        message: dict = {"role": "assistant", "content": text}
        calls = [
            {
                "id": item["call_id"],
                "type": "function",
                "function": {"name": item["name"], "arguments": item["arguments"]},
            }
            for item in self.items
            if item["type"] == "function_call"
        ]
        if calls:
            message["tool_calls"] = calls
        return message

    # Events

    def _event(self, kind: str, **fields) -> dict:
        event = {"type": kind, **fields, "sequence_number": self.sequence}
        self.sequence += 1
        return event

    def start(self) -> list[dict]:
        """response.created and response.in_progress."""
        response = self.response(status="in_progress")
        return [
            self._event("response.created", response=response),
            self._event("response.in_progress", response=copy.deepcopy(response)),
        ]

    def _begin(self, item: dict) -> list[dict]:
        events = self._close()
        self.items.append(item)
        self._open = item
        index = len(self.items) - 1
        added = {**copy.deepcopy(item), "status": "in_progress"}
        if item["type"] == "message":
            added["content"] = []
        elif item["type"] == "reasoning":
            added["summary"] = []
            added.pop("status")
        events.append(self._event("response.output_item.added", output_index=index, item=added))
        if item["type"] == "message":
            part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
            events.append(self._part_event(item, "response.content_part.added", part=part))
        elif item["type"] == "reasoning":
            part = {"type": "summary_text", "text": ""}
            events.append(self._part_event(item, "response.reasoning_summary_part.added", part=part))
        return events

    def _part_event(self, item: dict, kind: str, **fields) -> dict:
        """An event about an item's one content part (messages) or summary part (reasoning)."""
        index = "content_index" if item["type"] == "message" else "summary_index"
        return self._event(kind, item_id=item["id"], output_index=self.items.index(item), **{index: 0}, **fields)

    def _close(self, *, status: str = "completed") -> list[dict]:
        item, self._open = self._open, None
        if item is None:
            return []
        index = self.items.index(item)
        events = []
        if item["type"] == "message":
            part = item["content"][0]
            events.append(self._part_event(item, "response.output_text.done", text=part["text"], logprobs=[]))
            events.append(self._part_event(item, "response.content_part.done", part=copy.deepcopy(part)))
            item["status"] = status
        elif item["type"] == "reasoning":
            part = copy.deepcopy(item["summary"][0])
            events.append(self._part_event(item, "response.reasoning_summary_text.done", text=part["text"]))
            events.append(self._part_event(item, "response.reasoning_summary_part.done", part=part))
        else:
            item["status"] = status
            events.append(
                self._event(
                    "response.function_call_arguments.done",
                    item_id=item["id"],
                    name=item["name"],
                    output_index=index,
                    arguments=item["arguments"],
                )
            )
        events.append(self._event("response.output_item.done", output_index=index, item=copy.deepcopy(item)))
        return events

    def _text(self, text: str) -> list[dict]:
        events = []
        if self._open is None or self._open["type"] != "message":
            part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
            item = {
                "id": _id("msg"),
                "type": "message",
                "status": "in_progress",
                "role": "assistant",
                "content": [part],
            }
            events += self._begin(item)
        assert self._open is not None
        self._open["content"][0]["text"] += text
        events.append(self._part_event(self._open, "response.output_text.delta", delta=text, logprobs=[]))
        return events

    def _reasoning(self, text: str) -> list[dict]:
        events = []
        if self._open is None or self._open["type"] != "reasoning":
            events += self._begin(
                {"id": _id("rs"), "type": "reasoning", "summary": [{"type": "summary_text", "text": ""}]}
            )
        assert self._open is not None
        self._open["summary"][0]["text"] += text
        events.append(self._part_event(self._open, "response.reasoning_summary_text.delta", delta=text))
        return events

    def _tool_call(self, entry: Mapping) -> list[dict]:
        events = []
        function = entry.get("function") or {}
        arguments = function.get("arguments") or ""
        item = self._calls.get(entry["index"])
        if item is None:
            item = {
                "id": _id("fc"),
                "type": "function_call",
                "status": "in_progress",
                "call_id": entry["id"],
                "name": function.get("name") or "",
                "arguments": "",
            }
            self._calls[entry["index"]] = item
            events += self._begin(item)
        if arguments:
            item["arguments"] += arguments
            events.append(
                self._event(
                    "response.function_call_arguments.delta",
                    item_id=item["id"],
                    output_index=self.items.index(item),
                    delta=arguments,
                )
            )
        return events

    def feed(self, chunks: list[dict]) -> list[dict]:
        """The events for chat stream chunks (ChatCompletionAccumulator.feed / finish)."""
        events: list[dict] = []
        for chunk in chunks:
            for choice in chunk.get("choices") or ():
                delta = choice.get("delta") or {}
                if delta.get("reasoning_content"):
                    events += self._reasoning(delta["reasoning_content"])
                if delta.get("content"):
                    events += self._text(delta["content"])
                for entry in delta.get("tool_calls") or ():
                    events += self._tool_call(entry)
        return events

    def finish(self, *, finish_reason: str, usage: dict) -> tuple[list[dict], dict]:
        """The closing events and the final response: `incomplete` when max_output_tokens cut it short."""
        if finish_reason == "length":
            events = self._close(status="incomplete")
            response = self.response(status="incomplete", usage=usage, incomplete={"reason": "max_output_tokens"})
            events.append(self._event("response.incomplete", response=response))
        else:
            events = self._close()
            response = self.response(status="completed", usage=usage)
            events.append(self._event("response.completed", response=response))
        return events, copy.deepcopy(response)

    def fail(self, error: ApiError) -> list[dict]:
        """An `error` event with the platform's code, then response.failed."""
        code = error.code if error.code in RESPONSE_ERROR_CODES else "server_error"
        return [
            self._event("error", code=error.code, message=error.message, param=error.param),
            self._event(
                "response.failed",
                response=self.response(status="failed", error={"code": code, "message": error.message}),
            ),
        ]
