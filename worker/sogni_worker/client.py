"""The protocol client: connect, hello, heartbeats, concurrent jobs, cancel, reconnect, drain."""

from __future__ import annotations

import asyncio
import json
import logging
import random
import signal
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus, InvalidURI, WebSocketException

from . import __version__, protocol
from .engines.base import Engine, EngineError, Finish
from .outbox import Outbox, dumps
from .streaming import Generation, coalesced

log = logging.getLogger("sogni_worker")

BACKOFF_START = 1.0
BACKOFF_MAX = 30.0
# After a connection the platform welcomed, the platform was up moments ago: a restart or a deploy is
# the likely cause, so retry soon (within ~10 s of it coming back) instead of climbing to BACKOFF_MAX.
BACKOFF_MAX_AFTER_HEALTHY = 5.0
WELCOME_TIMEOUT = 15.0
MAX_INCOMING_BYTES = 16 * 1024 * 1024
# Half the platform's default frame budget (2000/s): bursts from many slots coalesce instead of
# tripping the platform's rate limit (close 4003).
MAX_FRAMES_PER_SECOND = 1000
# The platform counts each delta of a `deltas` frame as a message (2000 a second by default, bursts up
# to a second's worth): messages go out within a bucket of this many a second. Held back, a job's
# waiting deltas join into one (outbox), so a busy worker sends fewer, longer deltas rather than more.
MAX_MESSAGES_PER_SECOND = 1800


class FatalClose(Exception):
    """The platform said not to come back (bad key, unsupported protocol, banned)."""


@dataclass
class WorkerConfig:
    platform: str
    api_key: str
    name: str
    models: list[str]
    slots: int
    hardware: dict[str, Any] = field(default_factory=dict)


@dataclass
class _Job:
    cancel: threading.Event
    task: asyncio.Task | None = None
    stop_reason: str = ""  # "cancel" (platform asked) or "shutdown" (we are exiting)


def backoff_delay(attempt: int, *, cap: float = BACKOFF_MAX, rng: random.Random | None = None) -> float:
    """1 s doubling to `cap` (30 s), with ±50% jitter."""
    base = min(BACKOFF_START * 2**attempt, cap)
    return base * (rng or random).uniform(0.5, 1.5)


class Worker:
    def __init__(self, config: WorkerConfig, engine: Engine) -> None:
        self.config = config
        self.engine = engine
        self.url = protocol.worker_url(config.platform)
        self.jobs: dict[str, _Job] = {}
        self.draining = False
        self._drain_event: asyncio.Event | None = None
        self._idle: asyncio.Event | None = None
        self._ws: ClientConnection | None = None
        self._outbox: Outbox | None = None  # this connection's, if the platform takes `deltas` frames
        self._next_send = 0.0
        self._allowance, self._counted_at = float(MAX_MESSAGES_PER_SECOND), 0.0
        self._session_task: asyncio.Task | None = None
        self._welcomed = False
        self._worker_id = ""  # the last welcome's: sent again on reconnecting

    # -- lifecycle --------------------------------------------------------------------------------

    def drain(self) -> None:
        """SIGTERM: stop taking jobs, finish running ones, close with 1000, exit 0. A second one stops now."""
        if self.draining:
            log.warning("second stop signal: abandoning %d running job(s)", len(self.jobs))
            for job in self.jobs.values():
                job.stop_reason = job.stop_reason or "shutdown"
                job.cancel.set()
            return
        log.info("stop signal: draining (finishing %d running job(s), taking no new ones)", len(self.jobs))
        self.draining = True
        assert self._drain_event is not None
        self._drain_event.set()
        if self._session_task is not None and not self._welcomed:
            self._session_task.cancel()  # still connecting: nothing is running, stop waiting

    async def run(self) -> int:
        """Serve until drained (0) or refused for good (1)."""
        self._drain_event = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            try:
                loop.add_signal_handler(signum, self.drain)
            except (NotImplementedError, RuntimeError, ValueError):  # not the main thread / platform
                pass
        attempt = 0
        cap = BACKOFF_MAX
        while not self.draining:
            self._welcomed = False
            self._session_task = asyncio.create_task(self._session())
            try:
                await self._session_task
            except asyncio.CancelledError:
                if not self.draining:
                    raise
            except FatalClose as exc:
                log.error("%s; not reconnecting", exc)
                return 1
            except (OSError, TimeoutError, WebSocketException, ValueError) as exc:
                if isinstance(exc, InvalidStatus) and exc.response.status_code in (401, 403):
                    log.error("the platform refused the API key (HTTP %s); not reconnecting", exc.response.status_code)
                    return 1
                if isinstance(exc, InvalidURI):
                    log.error("bad platform URL: %s", exc)
                    return 1
                log.warning("connection to %s failed: %s", self.url, exc or type(exc).__name__)
            if self.draining:
                break
            if self._welcomed:
                attempt, cap = 0, BACKOFF_MAX_AFTER_HEALTHY
            delay = backoff_delay(attempt, cap=cap)
            attempt += 1
            log.info("reconnecting in %.1f s", delay)
            try:
                await asyncio.wait_for(self._drain_event.wait(), delay)
            except TimeoutError:
                pass
        log.info("drained; exiting")
        return 0

    # -- one connection ---------------------------------------------------------------------------

    async def _session(self) -> None:
        """One connection. Raises on a failed connect or a close other than the drained 1000."""
        headers = {"Authorization": f"Bearer {self.config.api_key}"}
        log.info("connecting to %s", self.url)
        async with connect(
            self.url, additional_headers=headers, max_size=MAX_INCOMING_BYTES, open_timeout=15, compression=None
        ) as ws:
            self._ws = ws
            try:
                await self._serve(ws)
            finally:
                self._ws = None
                await self._abandon_jobs()

    async def _serve(self, ws: ClientConnection) -> None:
        try:
            await self._serve_open(ws)
        except ConnectionClosed:
            pass
        self._raise_for_close(ws)

    async def _serve_open(self, ws: ClientConnection) -> None:
        c = self.config
        await self._send(
            ws,
            protocol.hello(
                worker_name=c.name,
                models=c.models,
                slots=c.slots,
                engine=self.engine.name,
                version=__version__,
                hardware=c.hardware,
                worker_id=self._worker_id,
                features=self.engine.features,
            ),
        )
        welcome = await self._welcome(ws)
        self._worker_id = str(welcome.get("worker_id") or "")
        interval = float(welcome.get("heartbeat_interval") or 5.0)
        log.info(
            "registered as worker %s serving %s (%d slot(s), heartbeat every %.1f s)",
            welcome.get("worker_id"),
            welcome.get("models"),
            c.slots,
            interval,
        )
        if welcome.get("rejected_models"):
            log.warning("the platform does not know these model ids: %s", welcome["rejected_models"])
        if not welcome.get("models", c.models):
            await ws.close(1000, "no models")
            raise FatalClose(f"the platform accepted none of the models {c.models}")
        self._welcomed = True
        helpers = [
            asyncio.create_task(self._heartbeats(ws, interval)),
            asyncio.create_task(self._drainer(ws)),
        ]
        self._outbox = None
        if "deltas" in (welcome.get("features") or []):
            self._outbox = Outbox(lambda text, messages: self._send_text(ws, text, messages))
            helpers.append(asyncio.create_task(self._write(self._outbox)))
        try:
            async for raw in ws:
                await self._on_frame(ws, raw)
        finally:
            for helper in helpers:
                helper.cancel()

    async def _welcome(self, ws: ClientConnection) -> dict[str, Any]:
        raw = await asyncio.wait_for(ws.recv(), WELCOME_TIMEOUT)
        message = json.loads(raw)
        if message.get("type") != "welcome":
            await ws.close(1002, "expected welcome")
            raise ValueError(f"expected welcome, got {str(raw)[:200]}")
        return message

    def _raise_for_close(self, ws: ClientConnection) -> None:
        received = ws.protocol.close_rcvd  # the platform's code, even before the close handshake ends
        code, reason = (received.code, received.reason) if received else (ws.close_code, ws.close_reason)
        if code in protocol.FATAL_CLOSE_CODES:
            raise FatalClose(f"{protocol.FATAL_CLOSE_CODES[code]} (close code {code}{': ' + reason if reason else ''})")
        if not (self.draining and code == 1000):
            raise ConnectionError(f"connection closed (code {code}{': ' + reason if reason else ''})")

    async def _heartbeats(self, ws: ClientConnection, interval: float) -> None:
        try:
            while True:
                await asyncio.sleep(interval)
                await self._send(ws, {"type": "heartbeat", "running": list(self.jobs)})
        except ConnectionClosed:
            pass

    async def _write(self, outbox: Outbox) -> None:
        try:
            await outbox.run()
        except ConnectionClosed:
            pass  # the frame loop sees the close and ends the session

    async def _drainer(self, ws: ClientConnection) -> None:
        assert self._drain_event is not None and self._idle is not None
        await self._drain_event.wait()
        try:
            await self._send(ws, {"type": "draining"})
            await self._idle.wait()
            if self._outbox is not None:
                await self._outbox.empty.wait()  # the last jobs' done frames
            await ws.close(1000, "drained")
        except ConnectionClosed:
            pass

    async def _abandon_jobs(self) -> None:
        """The connection is gone: the platform has given up these jobs, so stop them."""
        tasks = [job.task for job in self.jobs.values() if job.task]
        for job in self.jobs.values():
            job.stop_reason = job.stop_reason or "shutdown"
            job.cancel.set()
        if tasks:
            log.warning("connection lost with %d job(s) running; stopping them", len(tasks))
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _send(self, ws: ClientConnection, message: dict[str, Any]) -> None:
        await self._send_text(ws, dumps(message))

    async def _send_text(self, ws: ClientConnection, text: str, messages: int = 1) -> None:
        now = time.monotonic()
        at = max(now, self._next_send)
        budget = MAX_MESSAGES_PER_SECOND
        self._allowance = min(budget, self._allowance + (at - self._counted_at) * budget)
        if self._allowance < messages:
            at += (messages - self._allowance) / budget
            self._allowance = float(messages)
        self._allowance -= messages
        self._counted_at = at
        self._next_send = at + 1 / MAX_FRAMES_PER_SECOND
        if at > now:
            await asyncio.sleep(at - now)
        await ws.send(text)

    async def _emit(self, ws: ClientConnection, frame: dict[str, Any]) -> None:
        """A running job's frame: through the outbox if there is one (in order with the others)."""
        if self._outbox is None:
            await self._send(ws, frame)
        else:
            self._outbox.put(frame)

    # -- frames and jobs --------------------------------------------------------------------------

    async def _on_frame(self, ws: ClientConnection, raw: str | bytes) -> None:
        try:
            message = json.loads(raw)
            kind = message["type"]
        except (ValueError, TypeError, KeyError):
            log.warning("ignoring a malformed frame from the platform: %r", str(raw)[:200])
            return
        if kind == "job":
            await self._on_job(ws, message)
        elif kind == "cancel":
            job = self.jobs.get(str(message.get("job_id")))
            if job is not None:
                log.info("job %s: cancel requested", message["job_id"])
                job.stop_reason = job.stop_reason or "cancel"
                job.cancel.set()
        else:
            log.info("ignoring a %r frame", kind)

    async def _on_job(self, ws: ClientConnection, message: dict[str, Any]) -> None:
        job_id, request = message.get("job_id"), message.get("request")
        if not isinstance(job_id, str) or not job_id:
            log.warning("ignoring a job frame without a job_id")
            return
        if job_id in self.jobs:
            log.warning("job %s: already running; ignoring the duplicate", job_id)
            return
        if not isinstance(request, dict) or not (
            isinstance(request.get("messages"), list)
            or ("prompt" in self.engine.features and isinstance(request.get("prompt"), str))
        ):
            await self._send(ws, protocol.error(job_id, "invalid_request", "job.request.messages is missing"))
            return
        if self.draining or len(self.jobs) >= self.config.slots:
            reason = "the worker is draining" if self.draining else "all slots are busy"
            await self._send(ws, protocol.error(job_id, "overloaded", reason, retryable=True))
            return
        job = _Job(cancel=threading.Event())
        self.jobs[job_id] = job
        assert self._idle is not None
        self._idle.clear()
        job.task = asyncio.create_task(self._run_job(ws, job_id, {**request, "model": message.get("model")}, job))

    async def _run_job(self, ws: ClientConnection, job_id: str, request: dict[str, Any], job: _Job) -> None:
        log.info("job %s: started (max_tokens %s)", job_id, request.get("max_tokens"))
        generation = Generation(self.engine, request, job.cancel, name=f"job-{job_id[:12]}")
        try:
            async for item in coalesced(generation):
                if isinstance(item, Finish):
                    done = {
                        "type": "done",
                        "job_id": job_id,
                        "finish_reason": item.finish_reason,
                        "usage": item.usage(),
                    }
                    await self._emit(ws, done)
                    log.info("job %s: done (%s, %s)", job_id, item.finish_reason, item.usage())
                    return
                if job.cancel.is_set():
                    raise EngineError("cancelled", "the job was cancelled")
                frame: dict[str, Any] = {"type": "delta", "job_id": job_id, "tokens": item.tokens}
                if item.content:
                    frame["content"] = item.content
                if item.reasoning:
                    frame["reasoning"] = item.reasoning
                if item.tool_calls:
                    frame["tool_calls"] = item.tool_calls
                if item.logprobs:
                    frame["logprobs"] = item.logprobs
                await self._emit(ws, frame)
        except EngineError as exc:
            await self._send_failure(ws, job_id, job, exc)
        except ConnectionClosed:
            job.cancel.set()
        except Exception as exc:  # an engine bug must not take the worker down
            log.exception("job %s: engine failed", job_id)
            await self._send_failure(ws, job_id, job, EngineError("engine_error", f"engine failed: {exc}"))
        finally:
            job.cancel.set()
            self.jobs.pop(job_id, None)
            if not self.jobs and self._idle is not None:
                self._idle.set()

    async def _send_failure(self, ws: ClientConnection, job_id: str, job: _Job, exc: EngineError) -> None:
        if exc.code == "cancelled" or job.cancel.is_set():
            if job.stop_reason == "shutdown":
                exc = EngineError("engine_error", "the worker is shutting down", retryable=True)
            else:
                exc = EngineError("cancelled", "the job was cancelled")
        log.info("job %s: %s: %s", job_id, exc.code, exc.message)
        try:
            await self._emit(ws, protocol.error(job_id, exc.code, exc.message, retryable=exc.retryable))
        except ConnectionClosed:
            pass
