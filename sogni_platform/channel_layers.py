"""The channel layer: Redis pub/sub between processes, a plain queue within one.

A worker's socket and the requests it serves often live in the same server process. A message
between them then goes straight onto the receiving channel's queue instead of out to Redis and
back (a PUBLISH, a pub/sub read and two msgpack passes per token). Messages sent in-process are not
copied: senders build a fresh dict per message and never touch it again.

The channels of one event loop share one Redis subscription, their inbox: a channel is named
`<inbox>!<id>`, and a message for it from another process is published to the inbox with the
channel's name and put on that channel's queue here. Opening and closing a channel (one per
request) costs Redis nothing. A name without `!` is published to as it is.

A channel here holds at most `capacity` unread messages: past that it gets one CHANNEL_OVERFLOW
message and drops the rest, so a sender faster than the reader cannot grow the process without bound.
"""

import asyncio
import logging
import uuid
from dataclasses import dataclass
from typing import Any

from channels_redis.pubsub import RedisPubSubChannelLayer
from redis.exceptions import ConnectionError as RedisConnectionError

logger = logging.getLogger(__name__)

_TO = "__channel__"  # the channel an inbox message is for
# The last message a channel gets when its reader fell `capacity` messages behind.
CHANNEL_OVERFLOW = "channel.overflow"


@dataclass(slots=True)
class _LocalChannel:
    queue: asyncio.Queue
    loop: asyncio.AbstractEventLoop
    overflowed: bool = False


class LocalFirstChannelLayer:
    extensions = ["flush"]  # no groups: a channel here is not subscribed in Redis by its own name

    def __init__(self, capacity: int = 100_000, **config):
        self.capacity = capacity
        self.remote = RedisPubSubChannelLayer(**config)
        self.local: dict[str, _LocalChannel] = {}
        # Per event loop: its inbox's name once subscribed, and the tasks that hand what arrives in an
        # inbox to its channels (its own; another's, for channels it took over from a closed loop).
        self._inboxes: dict[asyncio.AbstractEventLoop, asyncio.Task] = {}
        self._routers: dict[asyncio.AbstractEventLoop, dict[str, asyncio.Task]] = {}

    def __getattr__(self, name):  # flush's and close's helpers: the Redis layer's
        if name == "remote":
            raise AttributeError(name)
        return getattr(self.remote, name)

    async def new_channel(self, prefix: str = "specific.") -> str:
        loop = asyncio.get_running_loop()
        inbox = await self._inbox(loop, prefix)
        name = f"{inbox}!{uuid.uuid4().hex}"
        self.local[name] = _LocalChannel(queue=asyncio.Queue(), loop=loop)
        return name

    async def _inbox(self, loop: asyncio.AbstractEventLoop, prefix: str) -> str:
        """This loop's inbox, subscribed (once: concurrent first callers wait for the same subscription)."""
        subscribed = self._inboxes.get(loop)
        if subscribed is None or (subscribed.done() and (subscribed.cancelled() or subscribed.exception())):
            for closed in [other for other in self._inboxes if other.is_closed()]:  # loops a test ran and closed
                self._inboxes.pop(closed)
                self._routers.pop(closed, None)
            subscribed = self._inboxes[loop] = loop.create_task(self._inbox_subscribe(loop, prefix))
        return await asyncio.shield(subscribed)

    async def _inbox_subscribe(self, loop: asyncio.AbstractEventLoop, prefix: str) -> str:
        inbox = await self.remote.new_channel(f"{prefix}inbox.")
        self._route(loop, inbox)
        return inbox

    def _route(self, loop: asyncio.AbstractEventLoop, inbox: str) -> None:
        routers = self._routers.setdefault(loop, {})
        if inbox not in routers:
            routers[inbox] = loop.create_task(self._routing(loop, inbox))

    async def _routing(self, loop: asyncio.AbstractEventLoop, inbox: str) -> None:
        """Hand what arrives in `inbox` to this loop's channels (a receive subscribes it if it is not)."""
        while True:  # cancelled by flush, which unsubscribes
            try:
                message = await self.remote.receive(inbox)
            except asyncio.CancelledError:
                raise
            except Exception:  # one unreadable message must not cut the loop's channels off
                logger.exception("channel layer: a message for %s could not be read", inbox)
                continue
            local = self.local.get(message.pop(_TO, None))
            if local is not None and local.loop is loop:  # else gone (dropped, as Redis drops what nobody reads)
                self._put(local, message)

    def _put(self, local: _LocalChannel, message: dict) -> None:
        """On the channel's own loop: queue `message`, unless the reader is `capacity` messages behind."""
        if local.overflowed:
            return
        if local.queue.qsize() >= self.capacity:
            local.overflowed = True
            message = {"type": CHANNEL_OVERFLOW}
            logger.warning("channel layer: a reader fell %s messages behind; its channel is cut off", self.capacity)
        local.queue.put_nowait(message)

    async def _send_remote(self, channel: str, message: dict) -> None:
        inbox, routed, _ = channel.rpartition("!")
        if routed:
            channel, message = inbox, {**message, _TO: channel}
        try:
            await self.remote.send(channel, message)
        except RedisConnectionError:
            # A connection Redis closed (it restarted) fails once, then the pool opens a new one.
            logger.warning("channel layer: Redis connection lost, sending again on a new one")
            await self.remote.send(channel, message)

    async def send(self, channel: str, message: dict) -> None:
        local = self._here(channel)
        if local is not None:
            self._put(local, message)
        elif not self.send_local_threadsafe(channel, message):  # read on another thread's loop, or not here
            await self._send_remote(channel, message)

    def send_local_threadsafe(self, channel: str, message: dict) -> bool:
        """From any thread, without waiting: queue `message` on a channel of this process; False if the
        channel is not one (send it with `send`)."""
        local = self.local.get(channel)
        if local is None:
            return False
        try:
            local.loop.call_soon_threadsafe(self._put, local, message)
        except RuntimeError:  # that loop is gone, and its reader with it
            self.local.pop(channel, None)
            return False
        return True

    def _here(self, channel: str) -> _LocalChannel | None:
        """The channel, if it is of this process and read on the running loop. One whose loop has closed
        (a test's `async_to_sync` call made it) is taken over by the running loop, inbox and all."""
        local = self.local.get(channel)
        if local is None:
            return None
        running = asyncio.get_running_loop()
        if local.loop is not running:
            if not local.loop.is_closed():
                return None
            queue: asyncio.Queue[Any] = asyncio.Queue()
            while not local.queue.empty():
                queue.put_nowait(local.queue.get_nowait())
            local = self.local[channel] = _LocalChannel(queue=queue, loop=running, overflowed=local.overflowed)
            self._route(running, channel.rpartition("!")[0])
        return local

    def local_queue(self, channel: str) -> asyncio.Queue | None:
        """The queue of a channel of this process read on the running loop, or None. Unlike a `receive`,
        a wait on it may be cancelled (a timeout) without giving the channel up."""
        local = self._here(channel)
        return None if local is None else local.queue

    def receive_nowait(self, channel: str) -> dict | None:
        """A message already waiting on a channel of this process, or None."""
        local = self.local.get(channel)
        if local is None or local.queue.empty():
            return None
        return local.queue.get_nowait()

    async def receive(self, channel: str) -> dict:
        """The next message. Cancelling a receive gives the channel up, as the pub/sub layer does: that is
        how a consumer's channel ends."""
        local = self._here(channel)
        if local is None:
            return await self.remote.receive(channel)
        try:
            return await local.queue.get()
        except asyncio.CancelledError:
            self.discard(channel)
            raise

    def discard(self, channel: str) -> None:
        """Give a channel of this process up: later messages for it are dropped."""
        self.local.pop(channel, None)

    async def flush(self) -> None:
        self.local.clear()
        for routers in list(self._routers.values()):
            for router in routers.values():
                router.cancel()  # its pending remote receive is cancelled, which unsubscribes the inbox
        self._routers.clear()
        self._inboxes.clear()
        await self.remote.flush()
