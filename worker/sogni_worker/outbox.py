"""A connection's job frames, sent in order by one writer; deltas that are ready together share a frame.

With the platform's `deltas` feature (announced in its welcome), consecutive `delta` frames waiting
when the writer runs go out as one `deltas` frame. Nothing waits to be batched: a delta is sent on the
event loop's next turn, with whatever else became ready meanwhile (many jobs' tokens when the loop is
busy, which is when fewer frames matter).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Iterable, Iterator
from typing import Any

MAX_BATCHED = 64
# A batch's JSON text, at up to 4 UTF-8 bytes a character, stays under the 64 KiB frame limit.
MAX_BATCH_CHARS = 12_000


def dumps(frame: dict[str, Any]) -> str:
    return json.dumps(frame, ensure_ascii=False, separators=(",", ":"))


def _joined(deltas: list[str]) -> str:
    return deltas[0] if len(deltas) == 1 else '{"type":"deltas","deltas":[' + ",".join(deltas) + "]}"


def batches(frames: Iterable[tuple[bool, str]]) -> Iterator[str]:
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
            yield text
    if group:
        yield _joined(group)


class Outbox:
    def __init__(self, send_text: Callable[[str], Awaitable[None]]) -> None:
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
                for text in batches(frames):
                    await self._send_text(text)
            self.empty.set()
