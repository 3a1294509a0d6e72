"""A connection's job frames, sent in order by one writer; deltas that are ready together share a frame.

With the platform's `deltas` feature (announced in its welcome), consecutive `delta` frames waiting
when the writer runs go out as one `deltas` frame, a job's several deltas in it joined into one (the
platform counts each delta against its rate limit). Nothing waits to be batched: a delta is sent on the
event loop's next turn, with whatever else became ready meanwhile (many jobs' tokens when the loop is
busy, which is when fewer frames matter).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Iterable, Iterator
from typing import Any, NamedTuple

MAX_BATCHED = 64
# A batch's JSON text, at up to 4 UTF-8 bytes a character, stays under the 64 KiB frame limit.
MAX_BATCH_CHARS = 12_000


class Batch(NamedTuple):
    text: str
    messages: int  # what the platform's rate limit counts it as: each delta one, any other frame one


def dumps(frame: dict[str, Any]) -> str:
    return json.dumps(frame, ensure_ascii=False, separators=(",", ":"))


def _merged(deltas: list[str]) -> list[str]:
    """A job's deltas joined into one where its first one was (text concatenated, tokens summed). Never
    across a delta with tool calls, nor reasoning after content (one delta cannot say that order)."""
    parsed = [json.loads(text) for text in deltas]
    if len({delta["job_id"] for delta in parsed}) == len(parsed):
        return deltas
    joined: dict[str, dict[str, Any]] = {}
    out: list[dict[str, Any]] = []
    for delta in parsed:
        into = joined.get(delta["job_id"])
        if delta.get("tool_calls") or (into is not None and delta.get("reasoning") and into.get("content")):
            joined.pop(delta["job_id"], None)
            if not delta.get("tool_calls"):
                joined[delta["job_id"]] = delta
            out.append(delta)
            continue
        if into is None:
            joined[delta["job_id"]] = delta
            out.append(delta)
            continue
        for name in ("content", "reasoning"):
            if delta.get(name):
                into[name] = (into.get(name) or "") + delta[name]
        into["tokens"] = into.get("tokens", 0) + delta.get("tokens", 0)
        if delta.get("logprobs"):
            into["logprobs"] = (into.get("logprobs") or []) + delta["logprobs"]
    return [dumps(delta) for delta in out]


def _joined(deltas: list[str]) -> Batch:
    if len(deltas) > 1:
        deltas = _merged(deltas)
    if len(deltas) == 1:
        return Batch(deltas[0], 1)
    return Batch('{"type":"deltas","deltas":[' + ",".join(deltas) + "]}", len(deltas))


def batches(frames: Iterable[tuple[bool, str]]) -> Iterator[Batch]:
    """(is a delta, JSON text) in order → frames to send, in the same order, runs of deltas joined."""
    group: list[str] = []
    size = 0
    for is_delta, text in frames:
        if group and (not is_delta or len(group) == MAX_BATCHED or size + len(text) > MAX_BATCH_CHARS):
            yield _joined(group)
            group, size = [], 0
        if is_delta:
            group.append(text)
            size += len(text)
        else:
            yield Batch(text, 1)
    if group:
        yield _joined(group)


class Outbox:
    def __init__(self, send_text: Callable[[str, int], Awaitable[None]]) -> None:
        self._send_text = send_text
        self._frames: list[tuple[bool, str]] = []
        self._ready = asyncio.Event()
        self.empty = asyncio.Event()  # set while nothing is waiting or being sent
        self.empty.set()

    def put(self, frame: dict[str, Any]) -> None:
        self._frames.append((frame["type"] == "delta", dumps(frame)))
        self.empty.clear()
        self._ready.set()

    async def run(self) -> None:
        """Send what is put, until cancelled; raises what sending raises (the connection closed)."""
        while True:
            await self._ready.wait()
            self._ready.clear()
            while self._frames:
                frames, self._frames = self._frames, []
                for batch in batches(frames):
                    await self._send_text(batch.text, batch.messages)
            self.empty.set()
