"""The worker socket, /ws/worker/: plumbing between a worker program and the platform.

Frames are checked by inference.protocol; registry and job state change only through services
(run in pool threads via _db). Deltas are relayed straight to the waiting request's reply
channel: one channel-layer message per frame, no database write per token.
"""

import asyncio
import json
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime

from channels.consumer import get_handler_name
from channels.db import DatabaseSyncToAsync
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from django.utils import timezone

from accounts.selectors import api_key_authenticate, api_key_from_headers, scope_headers
from inference import protocol
from inference.models import Job
from inference.protocol import ProtocolViolation, RateLimiter, parse_frame
from inference.relay import REPLY_ASSIGNED, REPLY_DELTA
from inference.services import (
    WorkerRefused,
    job_complete,
    job_fail,
    job_mark_running,
    job_requeue,
    worker_disconnect,
    worker_heartbeat,
    worker_register,
    worker_set_draining,
)
from inference.services.jobs import Relayed
from inference.services.leases import Progress, jobs_lease_renew, jobs_progress_save, reliability_sweep
from inference.services.trust import CLIENT_ERRORS, job_outcome_record, worker_fault_record

logger = logging.getLogger(__name__)

MAX_DROPPED_FRAMES = 100


@dataclass(slots=True)
class HeldJob:
    """A job assigned to this connection, as far as this connection relayed it."""

    reply_channel: str
    model_id: str
    max_tokens: int
    output_cap: int  # UTF-8 bytes the job may relay (JOB_OUTPUT_BYTES_*)
    tokens: int = 0  # as the worker's deltas claim them
    output: list[str] = field(default_factory=list)  # the completion text relayed, counted at the job's end
    output_bytes: int = 0
    frames: int = 0
    first_token_at: datetime | None = None
    cancel_sent: bool = False
    unsaved: bool = False  # relayed tokens not yet in the job's row (jobs_progress_save)

    def text(self) -> str:
        return "".join(self.output)

    def relayed(self) -> Relayed:
        return Relayed(claimed_tokens=self.tokens, output=self.text())

    def progress(self) -> Progress:
        return Progress(model_id=self.model_id, max_tokens=self.max_tokens, relayed=self.relayed())


def _relayed_text(frame: dict) -> tuple[str, int]:
    """A delta's completion text (content, reasoning, tool-call names and arguments), and the UTF-8
    bytes of all it relays (tool-call ids too)."""
    text = frame["content"] + frame["reasoning"]
    ids = 0
    for call in frame["tool_calls"]:
        text += call.get("name", "") + call.get("arguments", "")
        ids += len(call.get("id", ""))
    return text, len(text.encode("utf-8")) + ids


def _db(function):
    """ORM off the event loop, in a pool thread: every connection's database work in this process
    would otherwise queue on one shared thread (nothing here relies on thread affinity)."""
    return DatabaseSyncToAsync(function, thread_sensitive=False)


def _authenticate(scope):
    return api_key_authenticate(api_key_from_headers(scope_headers(scope)))


_last_reap = 0.0


async def _reap_embedded() -> None:
    """Embedded mode (eager Celery, no beat, in-memory channel layer): the lease reaper runs here, in
    the server process whose channel layer reaches the workers, at most every JOB_REAPER_SECONDS.
    Jobs only run while a worker is connected, so a worker's watchdog is always there to run it."""
    global _last_reap
    now = time.monotonic()
    if now - _last_reap < settings.JOB_REAPER_SECONDS:
        return
    _last_reap = now
    try:
        await _db(reliability_sweep)()
    except Exception:
        logger.exception("embedded lease reaper failed")


class WorkerConsumer(AsyncWebsocketConsumer):
    async def connect(self):
        self.worker_id: int | None = None
        self.owner = None
        self.api_key = None
        self.jobs: dict[str, HeldJob] = {}
        self.closing = False
        self.dropped = 0
        self.last_frame = time.monotonic()
        self.heartbeat_written = self.last_frame
        self.limiter = RateLimiter(settings.WORKER_MAX_MESSAGES_PER_SECOND, now=self.last_frame)
        self.background: set[asyncio.Task] = set()
        self.watchdog: asyncio.Task | None = None
        self.saver: asyncio.Task | None = None
        api_key = await _db(_authenticate)(self.scope)
        await self.accept()
        if api_key is None:
            logger.warning("worker socket from %s refused: invalid or disabled API key", self._peer())
            await self._close(protocol.CLOSE_INVALID_KEY, "invalid or disabled API key")
            return
        self.owner, self.api_key = api_key.user, api_key
        self.watchdog = asyncio.create_task(self._watch())

    async def disconnect(self, code):
        self.closing = True
        if self.watchdog is not None:
            self.watchdog.cancel()
        if self.saver is not None:
            self.saver.cancel()  # worker_disconnect settles with everything relayed
        if self.worker_id is None:
            return
        if self.background:
            await asyncio.wait(self.background)
        delivered = {job_id: job.relayed() for job_id, job in self.jobs.items() if job.frames}
        await _db(worker_disconnect)(
            worker_id=self.worker_id,
            channel_name=self.channel_name,
            delivered=delivered,
        )
        for job in self.jobs.values():  # each job it held when it went away counts against the worker
            if not job.cancel_sent:  # (one the client gave up on does not)
                await _db(worker_fault_record)(worker_id=self.worker_id, kind="aborted")
        self.jobs.clear()

    async def dispatch(self, message):
        """A bug in a handler closes this connection cleanly, so `disconnect` still releases its jobs.

        Unlike channels' own dispatch, no close_old_connections before each message: that is a hop to
        a thread and back per token, and every database call here runs in DatabaseSyncToAsync, which
        closes stale connections in its own thread.
        """
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        try:
            await handler(message)
        except StopConsumer:
            raise
        except Exception:
            if message.get("type") == "websocket.disconnect":
                raise
            logger.exception("worker %s: error handling %s; closing", self.worker_id, message.get("type"))
            if not self.closing:
                await self._close(1011, "internal error")

    # Worker → platform.

    async def receive(self, text_data=None, bytes_data=None):
        if self.closing or self.owner is None:
            return
        now = time.monotonic()
        self.last_frame = now
        try:
            if not self.limiter.allow(now):
                raise ProtocolViolation("more than WORKER_MAX_MESSAGES_PER_SECOND frames per second")
            frame = parse_frame(text_data, max_bytes=settings.WORKER_MAX_MESSAGE_BYTES)
            if self.worker_id is None and frame["type"] != "hello":
                raise ProtocolViolation(f"{frame['type']} before hello")
            if self.worker_id is not None and frame["type"] == "hello":
                raise ProtocolViolation("hello sent twice")
            if frame["type"] == "deltas" and not self.limiter.allow(now, cost=len(frame["deltas"]) - 1):
                raise ProtocolViolation("more than WORKER_MAX_MESSAGES_PER_SECOND deltas per second")
        except ProtocolViolation as violation:
            logger.warning(
                "worker %s of %s (%s): protocol violation, frame dropped, closing %s: %s",
                self.worker_id,
                self.owner,
                self._peer(),
                violation.code,
                violation.reason,
            )
            await self._close(violation.code, violation.reason)
            return
        await getattr(self, f"on_{frame['type']}")(frame)

    async def on_hello(self, frame: dict) -> None:
        try:
            registration = await _db(worker_register)(
                owner=self.owner,
                name=frame["worker_name"],
                model_ids=frame["models"],
                slots=frame["slots"],
                engine=frame["engine"],
                version=frame["version"],
                hardware=frame["hardware"],
                features=frame["features"],
                channel_name=self.channel_name,
                api_key=self.api_key,
                resumes=frame["worker_id"],
            )
        except WorkerRefused as refused:
            logger.warning("worker %r of %s refused: %s", frame["worker_name"], self.owner, refused.reason)
            await self._close(refused.close_code, refused.reason)
            return
        self.worker_id = registration.worker.pk
        await self.send_frame(
            {
                "type": "welcome",
                "protocol": protocol.PROTOCOL_VERSION,
                "worker_id": str(self.worker_id),
                "heartbeat_interval": settings.WORKER_HEARTBEAT_SECONDS,
                "models": registration.accepted,
                "rejected_models": registration.rejected,
                "features": list(protocol.FEATURES),
            }
        )

    async def on_heartbeat(self, frame: dict) -> None:
        now = time.monotonic()
        if now - self.heartbeat_written < settings.WORKER_HEARTBEAT_SECONDS / 2:
            return  # the database needs at most one write per interval
        self.heartbeat_written = now
        held = await _db(worker_heartbeat)(worker_id=self.worker_id, channel_name=self.channel_name)
        running = [job_id for job_id in frame["running"] if job_id in self.jobs]
        if held and running:
            await _db(jobs_lease_renew)(job_ids=running, channel_name=self.channel_name)
        if not held:
            logger.warning("worker %s: connection no longer holds the worker, closing", self.worker_id)
            await self._close(protocol.CLOSE_PROTOCOL_VIOLATION, "connection superseded")
            return
        api_key = await _db(_authenticate)(self.scope)  # a key changed in a way no kick reached
        if api_key is None or self.api_key is None or api_key.pk != self.api_key.pk:
            logger.warning("worker %s: its API key no longer authenticates, closing", self.worker_id)
            await self._close(protocol.CLOSE_INVALID_KEY, "invalid or disabled API key")

    async def on_draining(self, frame: dict) -> None:
        await _db(worker_set_draining)(worker_id=self.worker_id, channel_name=self.channel_name)

    async def on_delta(self, frame: dict) -> None:
        job = self.jobs.get(frame["job_id"])
        if job is None:
            await self._drop(frame)
            return
        text, size = _relayed_text(frame)
        if job.output_bytes + size > job.output_cap:
            await self._over_output_cap(frame["job_id"], job)
            return
        job.output.append(text)
        job.output_bytes += size
        job.frames += 1
        job.tokens += frame["tokens"]
        message = {"type": REPLY_DELTA, "tokens": frame["tokens"]}
        for name in ("content", "reasoning", "tool_calls", "logprobs"):
            if frame[name]:
                message[name] = frame[name]
        await self.channel_layer.send(job.reply_channel, message)
        if job.first_token_at is None:
            job.first_token_at = timezone.now()
            self._in_background(
                _db(job_mark_running)(
                    job_id=frame["job_id"], channel_name=self.channel_name, first_token_at=job.first_token_at
                )
            )
        job.unsaved = True
        if self.saver is None:
            self.saver = asyncio.ensure_future(self._save_progress())

    async def on_deltas(self, frame: dict) -> None:
        for delta in frame["deltas"]:
            await self.on_delta(delta)

    async def on_done(self, frame: dict) -> None:
        job = self.jobs.pop(frame["job_id"], None)
        if job is None:
            await self._drop(frame)
            return
        finish = {
            "job_id": frame["job_id"],
            "channel_name": self.channel_name,
            "finish_reason": frame["finish_reason"],
            # The worker's claims; the job is billed on the platform's counts.
            "prompt_tokens": frame["prompt_tokens"],
            "completion_tokens": frame["completion_tokens"],
            "reasoning_tokens": frame["reasoning_tokens"],
            "output": job.text(),
            "first_token_at": job.first_token_at,
        }
        # Settled here, off the frame loop (the other jobs' deltas need not wait for it), not by Celery:
        # a stream's end must not depend on the broker. A disconnect waits for it (self.background).
        self._in_background(_db(job_complete)(**finish))

    async def on_error(self, frame: dict) -> None:
        job = self.jobs.pop(frame["job_id"], None)
        if job is None:
            await self._drop(frame)
            return
        code, text = frame["code"], frame["message"]
        logger.info("worker %s: job %s failed with %s: %r", self.worker_id, frame["job_id"], code, text[:500])
        if code == "cancelled" and not job.cancel_sent:
            # Cancelled unasked: the worker gave the job up. No reward and, as a failure, a fault.
            code, text = "worker_error", f"cancelled without a cancel from the platform: {text}"
        retry = frame["retryable"] and not job.frames and not job.cancel_sent
        if retry and code not in ("cancelled", "worker_error", *CLIENT_ERRORS):
            reason = f"the worker reported {code}"
            await _db(job_requeue)(job_id=frame["job_id"], channel_name=self.channel_name, reason=reason)
            self._in_background(_db(worker_fault_record)(worker_id=self.worker_id, kind="failed"))
            return
        ended = await _db(job_fail)(
            job_id=frame["job_id"],
            channel_name=self.channel_name,
            code=code,
            worker_message=text,
            # After the client's cancel, whatever the worker answers ends the job as the client's doing.
            status=Job.Status.CANCELLED if job.cancel_sent else Job.Status.FAILED,
            completion_tokens=job.tokens,
            output=job.text(),
            first_token_at=job.first_token_at,
        )
        self._in_background(_db(job_outcome_record)(job=ended))

    async def _over_output_cap(self, job_id: str, job: HeldJob) -> None:
        """The worker sent more than the job may relay: it is stopped, and the job fails at the cap (the
        customer pays for what was relayed, the worker earns nothing and has a fault)."""
        logger.warning("worker %s: job %s went past its output cap of %s bytes", self.worker_id, job_id, job.output_cap)
        await self.send_frame({"type": "cancel", "job_id": job_id})
        message = "The worker sent more output than max_tokens allows; the response was cut off."
        await self.on_error({"job_id": job_id, "code": "output_limit_exceeded", "message": message, "retryable": False})

    # Platform → worker (channel-layer messages addressed to this connection).

    async def job_assign(self, event: dict) -> None:
        if self.closing or self.worker_id is None:
            return  # still assigned to this connection in the database: disconnect releases it
        output_cap = event["max_tokens"] * settings.JOB_OUTPUT_BYTES_PER_TOKEN + settings.JOB_OUTPUT_BYTES_SLACK
        self.jobs[event["job_id"]] = HeldJob(
            reply_channel=event["reply_channel"],
            model_id=event["model"],
            max_tokens=event["max_tokens"],
            output_cap=output_cap,
        )
        await self.send_frame(
            {"type": "job", "job_id": event["job_id"], "model": event["model"], "request": event["request"]}
        )
        await self.channel_layer.send(
            event["reply_channel"],
            {"type": REPLY_ASSIGNED, "job_id": event["job_id"], "worker_channel": self.channel_name},
        )

    async def job_cancel(self, event: dict) -> None:
        job = self.jobs.get(event["job_id"])
        if job is not None and not job.cancel_sent and not self.closing:
            job.cancel_sent = True
            await self.send_frame({"type": "cancel", "job_id": event["job_id"]})

    async def job_revoke(self, event: dict) -> None:
        """The reaper took the job back (lease lapsed, or too long): relay nothing more of it. A job this
        connection was sent and let lapse while its server heard it is the worker's fault."""
        job = self.jobs.pop(event["job_id"], None)
        if job is None:
            return
        if not job.cancel_sent:
            self._in_background(_db(worker_fault_record)(worker_id=self.worker_id, kind=event["fault"]))
        if not self.closing:
            await self.send_frame({"type": "cancel", "job_id": event["job_id"]})

    async def worker_kick(self, event: dict) -> None:
        if event.get("replaced"):
            self.jobs.clear()  # released when the worker's new connection took its row over
        if not self.closing:
            logger.info("worker %s: closed by the platform (%s)", self.worker_id, event["code"])
            await self._close(event["code"], event.get("reason", "closed by an operator"))

    # Plumbing.

    async def send_frame(self, frame: dict) -> None:
        await self.send(text_data=json.dumps(frame, separators=(",", ":")))

    async def _close(self, code: int, reason: str = "") -> None:
        self.closing = True
        await self.close(code=code, reason=reason.encode("utf-8")[:120].decode("utf-8", "ignore"))

    async def _drop(self, frame: dict) -> None:
        """A frame about a job this connection does not hold: never touches that job."""
        self.dropped += 1
        logger.warning(
            "worker %s of %s: dropped %s for job %r it does not hold",
            self.worker_id,
            self.owner,
            frame["type"],
            frame["job_id"],
        )
        if self.dropped > MAX_DROPPED_FRAMES:
            await self._close(protocol.CLOSE_PROTOCOL_VIOLATION, "too many frames for jobs not held")

    def _in_background(self, coroutine) -> None:
        task = asyncio.ensure_future(coroutine)
        self.background.add(task)
        task.add_done_callback(self._background_done)

    def _background_done(self, task: asyncio.Task) -> None:
        self.background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("worker %s: background write failed", self.worker_id, exc_info=task.exception())

    async def _save_progress(self) -> None:
        """While tokens flow, every JOB_PROGRESS_SECONDS: one write of what was relayed of each job since the
        last (jobs_progress_save), with a fresh lease. A server process that dies mid-stream loses at most
        that much of the delivered count. One save at a time, so counts never go back."""
        try:
            progress: dict[str, Progress] = {}
            while not self.closing:
                await asyncio.sleep(settings.JOB_PROGRESS_SECONDS)
                progress = {}
                for job_id, job in self.jobs.items():
                    if job.unsaved:
                        job.unsaved = False
                        progress[job_id] = job.progress()
                if not progress:
                    return
                await _db(jobs_progress_save)(channel_name=self.channel_name, progress=progress)
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("worker %s: saving job progress failed", self.worker_id)
            for job_id in progress:  # saved with the next delta
                if job_id in self.jobs:
                    self.jobs[job_id].unsaved = True
        finally:
            self.saver = None

    async def _watch(self) -> None:
        """Close a connection that never says hello, or goes silent for three heartbeat intervals."""
        hello_deadline = time.monotonic() + settings.WORKER_HELLO_TIMEOUT
        while not self.closing:
            if settings.CELERY_TASK_ALWAYS_EAGER:
                await _reap_embedded()
            if self.worker_id is None:
                wait = hello_deadline - time.monotonic()
                if wait <= 0:
                    logger.warning("worker socket from %s: no hello in time, closing", self._peer())
                    await self._close(protocol.CLOSE_HELLO_TIMEOUT, "no hello in time")
                    return
            else:
                wait = self.last_frame + 3 * settings.WORKER_HEARTBEAT_SECONDS - time.monotonic()
                if wait <= 0:
                    logger.warning("worker %s: silent for 3 heartbeat intervals, closing", self.worker_id)
                    await self._close(protocol.CLOSE_HEARTBEAT_TIMEOUT, "heartbeat missed")
                    return
            await asyncio.sleep(min(max(wait, 0.05), settings.WORKER_HEARTBEAT_SECONDS, settings.JOB_REAPER_SECONDS))

    def _peer(self) -> str:
        client = self.scope.get("client") or ("?", 0)
        return f"{client[0]}:{client[1]}"
