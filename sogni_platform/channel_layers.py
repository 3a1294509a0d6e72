"""The channel layer: Redis pub/sub between processes, a plain queue within one.

A worker's socket and the requests it serves often live in the same server process. A message
between them then goes straight onto the receiving channel's queue instead of out to Redis and
back (a PUBLISH, a pub/sub read and two msgpack passes per token). Messages from other processes
still arrive through Redis, so a channel reads both. Messages sent in-process are not copied:
senders build a fresh dict per message and never touch it again.
"""

import asyncio
import logging
from dataclasses import dataclass

from channels_redis.pubsub import RedisPubSubChannelLayer
from redis.exceptions import ConnectionError as RedisConnectionError

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class _LocalChannel:
    queue: asyncio.Queue
    loop: asyncio.AbstractEventLoop
    pump: asyncio.Task | None = None  # moves what Redis delivers for this channel onto `queue`


class LocalFirstChannelLayer:
    extensions = ["groups", "flush"]

    def __init__(self, **config):
        self.remote = RedisPubSubChannelLayer(**config)
        self.local: dict[str, _LocalChannel] = {}

    def __getattr__(self, name):  # groups, flush's helpers, close: the Redis layer's
        if name == "remote":
            raise AttributeError(name)
        return getattr(self.remote, name)

    async def new_channel(self, prefix: str = "specific.") -> str:
        name = await self.remote.new_channel(prefix)
        channel = _LocalChannel(queue=asyncio.Queue(), loop=asyncio.get_running_loop())
        channel.pump = asyncio.ensure_future(self._pump(name, channel.queue))
        self.local[name] = channel
        return name

    async def _pump(self, name: str, queue: asyncio.Queue) -> None:
        while True:
            queue.put_nowait(await self.remote.receive(name))

    async def _send_remote(self, channel: str, message: dict) -> None:
        try:
            await self.remote.send(channel, message)
        except RedisConnectionError:
            # A connection Redis closed (it restarted) fails once, then the pool opens a new one.
            logger.warning("channel layer: Redis connection lost, sending again on a new one")
            await self.remote.send(channel, message)

    async def send(self, channel: str, message: dict) -> None:
        local = self.local.get(channel)
        if local is None:
            await self._send_remote(channel, message)
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is local.loop:
            local.queue.put_nowait(message)
        elif not self.send_local_threadsafe(channel, message):
            await self._send_remote(channel, message)

    def send_local_threadsafe(self, channel: str, message: dict) -> bool:
        """From any thread, without waiting: queue `message` on a channel of this process; False if the
        channel is not one (send it with `send`)."""
        local = self.local.get(channel)
        if local is None:
            return False
        try:
            local.loop.call_soon_threadsafe(local.queue.put_nowait, message)
        except RuntimeError:  # that loop is gone, and its reader with it
            self.local.pop(channel, None)
            return False
        return True

    def local_queue(self, channel: str) -> asyncio.Queue | None:
        """The queue of a channel of this process read on the running loop, or None. Unlike a `receive`,
        a wait on it may be cancelled (a timeout) without giving the channel up."""
        local = self.local.get(channel)
        if local is None or local.loop is not asyncio.get_running_loop():
            return None
        return local.queue

    def receive_nowait(self, channel: str) -> dict | None:
        """A message already waiting on a channel of this process, or None."""
        local = self.local.get(channel)
        if local is None or local.queue.empty():
            return None
        return local.queue.get_nowait()

    async def receive(self, channel: str) -> dict:
        """The next message. Cancelling a receive gives the channel up (unsubscribes), as the pub/sub
        layer does: that is how a consumer's channel ends."""
        local = self.local.get(channel)
        if local is None or local.loop is not asyncio.get_running_loop():
            return await self.remote.receive(channel)
        try:
            return await local.queue.get()
        except asyncio.CancelledError:
            self.discard(channel)
            raise

    def discard(self, channel: str) -> None:
        """Give a channel of this process up (it unsubscribes): later messages for it are dropped."""
        local = self.local.pop(channel, None)
        if local is not None and local.pump is not None:
            local.pump.cancel()  # its pending remote receive is cancelled, which unsubscribes

    async def flush(self) -> None:
        for channel in list(self.local):
            self.discard(channel)
        await self.remote.flush()
