"""Shared Redis clients for rate limits and metrics (None in the embedded mode, no REDIS_URL).

Short timeouts: a Redis outage must not stall requests; callers fall back or skip.
"""

import asyncio
import weakref
from typing import Any

import redis
import redis.asyncio
from django.conf import settings

_TIMEOUTS: dict[str, Any] = {"socket_connect_timeout": 1.0, "socket_timeout": 1.0, "health_check_interval": 30}

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
        client = _sync_clients[url] = redis.Redis.from_url(url, **_TIMEOUTS)
    return client


def redis_async() -> redis.asyncio.Redis | None:
    """One client per event loop: an asyncio connection pool cannot be shared between loops."""
    url = settings.REDIS_URL
    if not url:
        return None
    clients = _async_clients.setdefault(asyncio.get_running_loop(), {})
    client = clients.get(url)
    if client is None:
        client = clients[url] = redis.asyncio.Redis.from_url(url, **_TIMEOUTS)
    return client
