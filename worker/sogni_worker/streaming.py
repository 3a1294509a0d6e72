"""Run a blocking engine generation in a thread and consume it from asyncio, coalescing deltas."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator
from typing import Any

from .engines.base import Delta, Engine, Finish

COALESCE_WINDOW = 0.005  # tokens within 5 ms of the previous frame share one frame
MAX_FRAME_CHARS = 8000  # keeps a JSON frame well under 64 KiB even if every char is escaped
MAX_FRAME_LOGPROBS = 16  # log-probability entries a frame carries: ~2 KB each with 20 alternatives


class _Failed:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


class Generation:
    """One engine generation in its own thread; items arrive on an asyncio queue."""

    def __init__(self, engine: Engine, request: dict[str, Any], cancel: threading.Event, *, name: str) -> None:
        self.loop = asyncio.get_running_loop()
        self.queue: asyncio.Queue[Delta | Finish | _Failed] = asyncio.Queue()
        self.cancel = cancel
        self.thread = threading.Thread(target=self._work, args=(engine, request), name=name, daemon=True)
        self.thread.start()

    def _put(self, item: Delta | Finish | _Failed) -> None:
        try:
            self.loop.call_soon_threadsafe(self.queue.put_nowait, item)
        except RuntimeError:  # the event loop is gone (process exiting)
            self.cancel.set()

    def _work(self, engine: Engine, request: dict[str, Any]) -> None:
        try:
            for item in engine.generate(request, self.cancel):
                self._put(item)
                if isinstance(item, Finish):
                    return
            self._put(_Failed(RuntimeError("engine ended without a finish")))
        except BaseException as exc:  # noqa: BLE001 - handed to the async side
            self._put(_Failed(exc))

    async def get(self, timeout: float | None = None) -> Delta | Finish:
        item = await (self.queue.get() if timeout is None else asyncio.wait_for(self.queue.get(), timeout))
        if isinstance(item, _Failed):
            raise item.exc
        return item

    def get_nowait(self) -> Delta | Finish | None:
        try:
            item = self.queue.get_nowait()
        except asyncio.QueueEmpty:
            return None
        if isinstance(item, _Failed):
            raise item.exc
        return item


def merge(deltas: list[Delta]) -> Delta:
    out = Delta()
    for delta in deltas:
        out.content += delta.content
        out.reasoning += delta.reasoning
        out.tokens += delta.tokens
        out.logprobs += delta.logprobs
        for fragment in delta.tool_calls:
            last = out.tool_calls[-1] if out.tool_calls else None
            if last is not None and last["index"] == fragment["index"] and not fragment.get("id"):
                last["arguments"] = last.get("arguments", "") + fragment.get("arguments", "")
                if fragment.get("name") and not last.get("name"):
                    last["name"] = fragment["name"]
            else:
                out.tool_calls.append(dict(fragment))
    return out


def split(delta: Delta, limit: int = MAX_FRAME_CHARS) -> list[Delta]:
    """Cut an oversized delta into pieces that each fit a frame; token count rides on the first."""
    size = len(delta.content) + len(delta.reasoning) + sum(len(f.get("arguments", "")) for f in delta.tool_calls)
    if size <= limit and len(delta.logprobs) <= MAX_FRAME_LOGPROBS:
        return [delta]
    pieces: list[Delta] = []
    # Log probabilities go first, so each arrives no later than its token's text.
    for i in range(0, len(delta.logprobs), MAX_FRAME_LOGPROBS):
        pieces.append(Delta(logprobs=delta.logprobs[i : i + MAX_FRAME_LOGPROBS]))
    for i in range(0, len(delta.reasoning), limit):
        pieces.append(Delta(reasoning=delta.reasoning[i : i + limit]))
    for i in range(0, len(delta.content), limit):
        pieces.append(Delta(content=delta.content[i : i + limit]))
    for fragment in delta.tool_calls:
        arguments = fragment.get("arguments", "")
        head = {k: v for k, v in fragment.items() if k != "arguments"}
        chunks = [arguments[i : i + limit] for i in range(0, len(arguments), limit)] or [""]
        pieces.append(Delta(tool_calls=[{**head, "arguments": chunks[0]}]))
        pieces.extend(Delta(tool_calls=[{"index": fragment["index"], "arguments": c}]) for c in chunks[1:])
    pieces[0].tokens = delta.tokens
    return pieces


async def coalesced(generation: Generation) -> AsyncIterator[Delta | Finish]:
    """Deltas as they come, merged when they arrive within the window of the last frame; then the Finish.

    The first delta (and any delta after a quiet spell) goes out at once; only tokens arriving in a
    burst wait, at most COALESCE_WINDOW, to share a frame.
    """
    last_sent = float("-inf")
    while True:
        item: Delta | Finish | None = await generation.get()
        batch: list[Delta] = []
        finish: Finish | None = None
        while item is not None:
            if isinstance(item, Finish):
                finish = item
                break
            batch.append(item)
            item = generation.get_nowait()
            if item is None and finish is None:
                remaining = last_sent + COALESCE_WINDOW - time.monotonic()
                if remaining > 0:
                    try:
                        item = await generation.get(remaining)
                    except TimeoutError:
                        item = None
        if batch:
            for piece in split(merge(batch)):
                yield piece
            last_sent = time.monotonic()
        if finish is not None:
            yield finish
            return
