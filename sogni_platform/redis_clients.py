"""Shared Redis clients for rate limits and metrics (None in the embedded mode, no REDIS_URL).

They sit on the request path, so a Redis outage must not stall requests: callers fall back or skip
on any RedisError, and the clients fail fast. A command waits at most TIMEOUT_S and is not retried
(redis-py retries ten times by default, which held requests for as long as a frozen Redis stayed
frozen); after a connection error or a timeout every call fails at once (RedisSkipped) for
SKIP_AFTER_FAILURE_S, so one request a second at most waits on a Redis that does not answer.
"""

import asyncio
import socket
import time
import weakref
from typing import Any

import redis
import redis.asyncio
import redis.asyncio.retry
import redis.retry
from django.conf import settings
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError, TimeoutError

TIMEOUT_S = 0.5
SKIP_AFTER_FAILURE_S = 1.0
_OUTAGE = (ConnectionError, TimeoutError, socket.timeout)


class RedisSkipped(ConnectionError):
    """Redis failed moments ago: not asked again until SKIP_AFTER_FAILURE_S have passed."""


class _Outages:
    """When each Redis server (by URL) last failed; every client of that URL, sync or async, skips it
    for SKIP_AFTER_FAILURE_S after a failure."""

    def __init__(self) -> None:
        self._failed_at: dict[str, float] = {}

    def check(self, url: str) -> None:
        failed_at = self._failed_at.get(url)
        if failed_at is not None and time.monotonic() - failed_at < SKIP_AFTER_FAILURE_S:
            raise RedisSkipped(f"Redis failed less than {SKIP_AFTER_FAILURE_S:g} s ago; skipped")

    def trip(self, url: str) -> None:
        self._failed_at[url] = time.monotonic()


_outages = _Outages()


class _FailFast(redis.retry.Retry):
    """No retry; a command is skipped while its Redis is known to be failing (every command and connect
    of a client goes through its Retry)."""

    def __init__(self, url: str):
        super().__init__(NoBackoff(), 0)
        self._url = url

    def call_with_retry(self, do, fail, *args, **kwargs):
        _outages.check(self._url)
        try:
            return super().call_with_retry(do, fail, *args, **kwargs)
        except _OUTAGE:
            _outages.trip(self._url)
            raise


class _FailFastAsync(redis.asyncio.retry.Retry):
    def __init__(self, url: str):
        super().__init__(NoBackoff(), 0)
        self._url = url

    async def call_with_retry(self, do, fail, *args, **kwargs):
        _outages.check(self._url)
        try:
            return await super().call_with_retry(do, fail, *args, **kwargs)
        except _OUTAGE:
            _outages.trip(self._url)
            raise


_OPTIONS: dict[str, Any] = {
    "socket_connect_timeout": TIMEOUT_S,
    "socket_timeout": TIMEOUT_S,
    "health_check_interval": 30,
}

_sync_clients: dict[str, redis.Redis] = {}
_async_clients: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, redis.asyncio.Redis]]" = (
    weakref.WeakKeyDictionary()
)


def redis_sync() -> redis.Redis | None:
    url = settings.REDIS_URL
    if not url:
        return None
    client = _sync_clients.get(url)
    if client is None:
        client = _sync_clients[url] = redis.Redis.from_url(url, retry=_FailFast(url), **_OPTIONS)
    return client


def redis_async() -> redis.asyncio.Redis | None:
    """One client per event loop: an asyncio connection pool cannot be shared between loops."""
    url = settings.REDIS_URL
    if not url:
        return None
    clients = _async_clients.setdefault(asyncio.get_running_loop(), {})
    client = clients.get(url)
    if client is None:
        client = clients[url] = redis.asyncio.Redis.from_url(url, retry=_FailFastAsync(url), **_OPTIONS)
    return client
