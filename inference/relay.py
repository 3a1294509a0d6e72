"""Channel-layer messages between dispatch, the worker consumer and the waiting request.

Every message is one `channel_layer.send` to a specific channel: a worker connection's channel
(`WORKER_*` types, handled by WorkerConsumer) or a request's reply channel (`REPLY_*` types, read
by the chat view). Nothing here touches the database.
"""

import asyncio
import threading

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from sogni_platform.channel_layers import CHANNEL_OVERFLOW

# To a worker connection.
WORKER_JOB_ASSIGN = "job.assign"
WORKER_JOB_CANCEL = "job.cancel"
WORKER_KICK = "worker.kick"

# To a request's reply channel.
REPLY_ASSIGNED = "job.assigned"
REPLY_REQUEUED = "job.requeued"
REPLY_DELTA = "job.delta"
REPLY_DONE = "job.done"
REPLY_ERROR = "job.error"
REPLY_OVERFLOW = CHANNEL_OVERFLOW  # from the channel layer: the reader fell too far behind


_thread = threading.local()
_loop_per_thread = False  # set in a Celery worker process (sogni_platform.celery), where no event loop runs


def loop_per_thread() -> None:
    """For a process that runs no event loop (a Celery worker): each thread that sends keeps one loop of
    its own, so the channel layer's Redis connection is reused instead of opened per message."""
    global _loop_per_thread
    _loop_per_thread = True


def channel_send(channel: str, message: dict) -> None:
    """Send from sync code (services, Celery tasks); run it after commit.

    To a channel of this process (a worker socket or a request served here) the message is queued for
    its loop without waiting. Otherwise `async_to_sync` sends it on the event loop of the server that
    runs this code in a thread (daphne, uvicorn, eager Celery in the web process); a Celery worker's
    thread sends on its own loop (`loop_per_thread`).
    """
    layer = get_channel_layer()
    assert layer is not None, "CHANNEL_LAYERS is configured in settings"
    send_local = getattr(layer, "send_local_threadsafe", None)  # sogni_platform.channel_layers
    if send_local is not None and send_local(channel, message):
        return  # a channel of this process: queued without waiting for its loop
    if not _loop_per_thread:
        async_to_sync(layer.send)(channel, message)
        return
    loop = getattr(_thread, "loop", None)
    if loop is None or loop.is_closed():
        loop = _thread.loop = asyncio.new_event_loop()
    loop.run_until_complete(layer.send(channel, message))


def send_on_commit(channel: str, message: dict) -> None:
    from django.db import transaction

    transaction.on_commit(lambda: channel_send(channel, message))


class ReplyReader:
    """Reads a reply channel with a timeout, without losing messages.

    The Redis pub/sub layer unsubscribes a channel whose `receive` is cancelled, so a timed-out wait
    must leave the pending receive running; `close` cancels it, which unsubscribes.
    """

    def __init__(self, channel: str):
        self.channel = channel
        layer = get_channel_layer()
        assert layer is not None, "CHANNEL_LAYERS is configured in settings"
        self._layer = layer
        self._receive_nowait = getattr(self._layer, "receive_nowait", None)  # sogni_platform.channel_layers
        self._local_queue = getattr(self._layer, "local_queue", None)
        self._pending: asyncio.Future | None = None
        self._ready: dict | None = None

    def ready(self) -> bool:
        """True if a message can be read without waiting."""
        if self._ready is not None:
            return True
        if self._pending is not None:
            return self._pending.done()
        if self._receive_nowait is not None:
            self._ready = self._receive_nowait(self.channel)
        return self._ready is not None

    async def next(self, timeout: float | None) -> dict | None:
        """The next message, or None if none came within `timeout` seconds."""
        if self.ready() and self._pending is None:
            message, self._ready = self._ready, None
            return message
        queue = self._local_queue(self.channel) if self._local_queue and self._pending is None else None
        if queue is not None:  # no task per message: wait on the channel's queue itself
            try:
                async with asyncio.timeout(timeout):
                    return await queue.get()
            except TimeoutError:
                return None
        if self._pending is None:
            self._pending = asyncio.ensure_future(self._layer.receive(self.channel))
        if not self._pending.done():
            done, _ = await asyncio.wait({self._pending}, timeout=timeout)
            if not done:
                return None
        pending, self._pending = self._pending, None
        return pending.result()

    async def close(self) -> None:
        """Unsubscribe: cancel a receive that is waiting (draining what is left first)."""
        self._ready = None
        for _ in range(1000):
            pending = self._pending or asyncio.ensure_future(self._layer.receive(self.channel))
            self._pending = None
            await asyncio.sleep(0)  # a fresh receive must reach its wait before cancelling unsubscribes
            if pending.done():
                if not pending.cancelled():
                    pending.exception()  # retrieved, so asyncio does not log it
                continue
            pending.cancel()
            try:
                await pending
            except asyncio.CancelledError:
                pass
            except Exception:  # noqa: S110 - cleanup only
                pass
            return
