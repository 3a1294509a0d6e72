"""Sliding 60-second windows of per-second buckets, in Redis (atomic Lua) or in this process.

A window is a hash {unix second: amount}. One call drops buckets older than the window, sums the
rest and, by mode, checks and/or adds in the same atomic step, so concurrent daphne processes
never both take the last slot. Redis's clock is the one clock for every process.
"""

import threading
import time
from dataclasses import dataclass
from enum import StrEnum

from sogni_platform.redis_clients import redis_async, redis_sync

WINDOW_SECONDS = 60


class Mode(StrEnum):
    CHECK_ADD = "check_add"  # add `amount` only if it fits (requests)
    CHECK = "check"  # would `amount` fit? adds nothing (a token estimate before the work)
    ADD = "add"  # add unconditionally (tokens actually used)
    ADJUST = "adjust"  # add a signed `amount` to the bucket of second `at` while it is in the window


@dataclass(frozen=True)
class WindowResult:
    allowed: bool
    used: int  # in the window, after this call
    retry_after: int  # seconds until `amount` would fit (0 when allowed)
    reset: int  # seconds until the window is empty again
    second: int = 0  # the bucket this call's amount went to (the store's clock)


_SCRIPT = """
local limit = tonumber(ARGV[1])
local amount = tonumber(ARGV[2])
local window = tonumber(ARGV[3])
local mode = ARGV[4]
local at = tonumber(ARGV[5])
local now = tonumber(redis.call('TIME')[1])
local flat = redis.call('HGETALL', KEYS[1])
local used, secs, counts = 0, {}, {}
for i = 1, #flat, 2 do
  local sec, n = tonumber(flat[i]), tonumber(flat[i + 1])
  if sec <= now - window then
    redis.call('HDEL', KEYS[1], flat[i])
  else
    used = used + n
    secs[#secs + 1] = sec
    counts[sec] = n
  end
end
local allowed = 1
if mode == 'adjust' then
  if counts[at] then
    local n = math.max(counts[at] + amount, 0)
    redis.call('HSET', KEYS[1], at, n)
    used = used - counts[at] + n
    counts[at] = n
  end
elseif mode ~= 'add' and used + amount > limit then
  allowed = 0
elseif mode ~= 'check' and amount > 0 then
  redis.call('HINCRBY', KEYS[1], now, amount)
  redis.call('EXPIRE', KEYS[1], window + 1)
  used = used + amount
  if not counts[now] then secs[#secs + 1] = now end
  counts[now] = (counts[now] or 0) + amount
end
table.sort(secs)
local retry = 0
if allowed == 0 then
  retry = window
  local freed = 0
  for _, sec in ipairs(secs) do
    freed = freed + counts[sec]
    if used - freed + amount <= limit then
      retry = sec + window - now
      break
    end
  end
end
local reset = 0
if #secs > 0 then reset = secs[#secs] + window - now end
return {allowed, used, retry, reset, now}
"""


def _evaluate(buckets: dict[int, int], *, now: int, limit: int, amount: int, mode: Mode, at: int) -> WindowResult:
    """The Lua script's logic for the in-process store; mutates `buckets`."""
    for sec in [sec for sec in buckets if sec <= now - WINDOW_SECONDS]:
        del buckets[sec]
    used = sum(buckets.values())
    allowed = True
    if mode == Mode.ADJUST:
        if at in buckets:
            adjusted = max(buckets[at] + amount, 0)
            used += adjusted - buckets[at]
            buckets[at] = adjusted
    elif mode != Mode.ADD and used + amount > limit:
        allowed = False
    elif mode != Mode.CHECK and amount > 0:
        buckets[now] = buckets.get(now, 0) + amount
        used += amount
    retry = 0
    if not allowed:
        retry, freed = WINDOW_SECONDS, 0
        for sec in sorted(buckets):
            freed += buckets[sec]
            if used - freed + amount <= limit:
                retry = sec + WINDOW_SECONDS - now
                break
    reset = max(buckets) + WINDOW_SECONDS - now if buckets else 0
    return WindowResult(allowed=allowed, used=used, retry_after=retry, reset=reset, second=now)


_local: dict[str, dict[int, int]] = {}
_local_lock = threading.Lock()


def _local_hit(key: str, limit: int, amount: int, mode: Mode, at: int) -> WindowResult:
    with _local_lock:
        buckets = _local.setdefault(key, {})
        return _evaluate(buckets, now=int(time.time()), limit=limit, amount=amount, mode=mode, at=at)


def _result(raw) -> WindowResult:
    allowed, used, retry, reset, second = (int(value) for value in raw)
    return WindowResult(allowed=bool(allowed), used=used, retry_after=retry, reset=reset, second=second)


def window_hit(*, key: str, limit: int, amount: int, mode: Mode, at: int = 0) -> WindowResult:
    """Raises redis errors; the caller decides what an unreachable Redis means. `at`: ADJUST's bucket."""
    client = redis_sync()
    if client is None:
        return _local_hit(key, limit, amount, mode, at)
    script = client.register_script(_SCRIPT)  # EVALSHA, loading the script on NOSCRIPT
    return _result(script(keys=[key], args=[limit, amount, WINDOW_SECONDS, str(mode), at]))


async def window_hit_async(*, key: str, limit: int, amount: int, mode: Mode, at: int = 0) -> WindowResult:
    client = redis_async()
    if client is None:
        return _local_hit(key, limit, amount, mode, at)
    script = client.register_script(_SCRIPT)
    return _result(await script(keys=[key], args=[limit, amount, WINDOW_SECONDS, str(mode), at]))
