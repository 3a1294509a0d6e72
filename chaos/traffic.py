"""Streaming load while a fault is injected: 16 clients each sending one streaming chat completion after
another (bench.load's request and SSE reader), a probe sending short streaming requests one at a time
(time to recover; a probe not done within 10 s failed), and a probe polling `GET /v1/models` (its latency
while the fault lasts).

A stream that has sent no event (keep-alive comments aside) for `bound_s`, counted from the end of the
last fault at the earliest, is closed by the client and counted as never ended.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import httpx

from bench.load import Result, Target, _body, _stream_one


@dataclass
class Stream:
    result: Result
    started: float
    ended: float | None = None
    never_ended: bool = False

    @property
    def stall(self) -> float:
        """The longest gap between consecutive `data:` events (chunks and [DONE]; keep-alive comments do not
        count), from the first event to the last, or to the client closing a never-ended stream."""
        events = list(self.result.events)
        if self.never_ended and events and self.ended:
            events.append(self.ended)
        return max((b - a for a, b in zip(events, events[1:], strict=False)), default=0.0)

    @property
    def tail(self) -> float | None:
        """From the last token (the worker sends `done` right after it) to the stream's last event."""
        if not self.result.ok or self.result.last_token_at is None:
            return None
        return self.result.events[-1] - self.result.last_token_at


@dataclass
class Probe:
    started: float
    ended: float
    ok: bool


@dataclass
class Traffic:
    target: Target
    concurrency: int = 16
    max_tokens: int = 40
    bound_s: float = 30.0
    streams: list[Stream] = field(default_factory=list)
    probes: list[Probe] = field(default_factory=list)
    models: list[Probe] = field(default_factory=list)
    faults: list[tuple[float, float]] = field(default_factory=list)
    fault_started: float | None = None

    def fault_begin(self) -> None:
        self.fault_started = time.perf_counter()

    def fault_end(self) -> float:
        end = time.perf_counter()
        self.faults.append((self.fault_started, end))
        self.fault_started = None
        return end

    def _overdue(self, stream: Stream) -> bool:
        if self.fault_started is not None:
            return False
        heard = stream.result.events[-1] if stream.result.events else stream.started
        since = max(heard, self.faults[-1][1] if self.faults else heard)
        return time.perf_counter() - since > self.bound_s

    def _request(self, client: httpx.AsyncClient, max_tokens: int) -> tuple[Result, Awaitable[None]]:
        result = Result(nonce=f"n{uuid.uuid4().hex[:16]}x")
        body = {**_body(result.nonce, stream=True, max_tokens=max_tokens, prompt="chaos"), "model": self.target.model}
        return result, _stream_one(client, self.target.urls[0], self.target, result, body)

    async def _stream(self, client: httpx.AsyncClient, max_tokens: int) -> Stream:
        result, request = self._request(client, max_tokens)
        stream = Stream(result=result, started=time.perf_counter())
        self.streams.append(stream)
        task = asyncio.create_task(request)
        while not task.done():
            await asyncio.wait({task}, timeout=0.25)
            if not task.done() and self._overdue(stream):
                stream.never_ended = True
                task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            result.error = "never ended: closed by the client"
        except (httpx.HTTPError, ValueError, KeyError) as exc:
            result.error = f"{type(exc).__name__}: {exc}"
        stream.ended = time.perf_counter()
        return stream

    async def _client(self, client: httpx.AsyncClient, stop: asyncio.Event) -> None:
        while not stop.is_set():
            stream = await self._stream(client, self.max_tokens)
            if not stream.result.ok:
                await asyncio.sleep(0.2)  # a refused request comes back at once: do not spin

    async def _probe(self, client: httpx.AsyncClient) -> None:
        while True:
            started = time.perf_counter()
            result, request = self._request(client, 4)
            try:
                await asyncio.wait_for(request, timeout=10)
            except (TimeoutError, httpx.HTTPError, ValueError, KeyError):
                pass
            self.probes.append(Probe(started, time.perf_counter(), result.ok))
            await asyncio.sleep(0.1)

    async def _models(self, client: httpx.AsyncClient) -> None:
        while True:
            started = time.perf_counter()
            try:
                response = await client.get(f"{self.target.urls[0]}/v1/models", headers=self.target.headers())
                ok = response.status_code == 200
            except httpx.HTTPError:
                ok = False
            self.models.append(Probe(started, time.perf_counter(), ok))
            await asyncio.sleep(0.25)

    async def run(self, fault: Callable[[Traffic], Awaitable[None]], *, warmup_s: float, after_s: float) -> None:
        """Load; `fault(self)` once `warmup_s` in; `after_s` more of load; then every stream ends or is closed."""
        limits = httpx.Limits(max_connections=self.concurrency + 8)
        timeout = httpx.Timeout(None, connect=5)
        async with (
            httpx.AsyncClient(timeout=timeout, limits=limits) as client,
            httpx.AsyncClient(timeout=httpx.Timeout(5)) as probe_client,
        ):
            stop = asyncio.Event()
            clients = [asyncio.create_task(self._client(client, stop)) for _ in range(self.concurrency)]
            probes = [asyncio.create_task(self._probe(probe_client)), asyncio.create_task(self._models(probe_client))]
            await asyncio.sleep(warmup_s)
            await fault(self)
            await asyncio.sleep(after_s)
            stop.set()
            await asyncio.gather(*clients)
            for task in probes:
                task.cancel()
            await asyncio.gather(*probes, return_exceptions=True)

    def recovered_after(self, at: float) -> float | None:
        """Seconds from `at` to the end of the first probe that was sent at or after `at` and succeeded."""
        ends = [probe.ended for probe in self.probes if probe.ok and probe.started >= at]
        return min(ends) - at if ends else None
