"""Prometheus metrics that hold across daphne processes and Celery workers.

Counters and the TTFT histogram live in one Redis hash (HINCRBY), so any process may record and
any process may serve the scrape; in the embedded mode (no REDIS_URL) they live in this process.
Gauges (queue depth, workers online, holds open) are computed from the database at scrape time by
callbacks that apps register with `metrics_gauge_register`. Recording never raises: a Redis outage
loses samples, never requests.

Call from anywhere:
    metrics_record_job(model=..., outcome="completed" | "failed" | ..., ttft_seconds=..., prompt_tokens=...,
                       completion_tokens=...)   # at a job's end, in one round trip
    metrics_observe_ttft(model=..., seconds=...)
    metrics_count_tokens(model=..., prompt=..., completion=...)
    metrics_count_request(...)   # the middleware's; `metrics_count_request_async` on the event loop
"""

import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from django.conf import settings

from sogni_platform.redis_clients import redis_async, redis_sync

logger = logging.getLogger(__name__)

TTFT_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0)
_SEP = "\x1f"  # between metric name and label pairs in a hash field

_local: dict[str, float] = defaultdict(float)
_local_lock = threading.Lock()
_last_warning = 0.0


def _hash_key() -> str:
    return f"{settings.CHANNEL_LAYER_PREFIX}:metrics:counters"


def _field(name: str, labels: dict[str, str]) -> str:
    return name + _SEP + _SEP.join(f"{key}={value}" for key, value in sorted(labels.items()))


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _parse_field(field: str) -> tuple[str, dict[str, str]]:
    name, *pairs = field.split(_SEP)
    return name, dict(pair.split("=", 1) for pair in pairs if pair)


def _warn(exc: Exception) -> None:
    global _last_warning
    now = time.monotonic()
    if now - _last_warning > 60:
        _last_warning = now
        logger.warning("metrics: could not record to Redis (%s); samples are being dropped", exc)


def _increments_ttft(model: str, seconds: float) -> list[tuple[str, float]]:
    le = next((str(bound) for bound in TTFT_BUCKETS if seconds <= bound), "+Inf")
    return [
        (_field("ttft_bucket", {"model": model, "le": le}), 1),
        (_field("ttft_sum", {"model": model}), seconds),
        (_field("ttft_count", {"model": model}), 1),
    ]


def _pipeline(client, increments: list[tuple[str, float]]):
    """A pipeline (of the sync or the async client) queued with `increments`, to execute."""
    pipe = client.pipeline(transaction=False)
    for field, amount in increments:
        if isinstance(amount, int):
            pipe.hincrby(_hash_key(), field, amount)
        else:
            pipe.hincrbyfloat(_hash_key(), field, amount)
    return pipe


def _record(increments: list[tuple[str, float]]) -> None:
    client = redis_sync()
    if client is None:
        with _local_lock:
            for field, amount in increments:
                _local[field] += amount
        return
    try:
        _pipeline(client, increments).execute()
    except Exception as exc:  # noqa: BLE001 - recording must never fail a request
        _warn(exc)


async def _record_async(increments: list[tuple[str, float]]) -> None:
    client = redis_async()
    if client is None:
        _record(increments)
        return
    try:
        await _pipeline(client, increments).execute()
    except Exception as exc:  # noqa: BLE001
        _warn(exc)


_METHODS = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}


def _request_increments(method: str, route: str, status: int) -> list[tuple[str, float]]:
    # Labels stay few: URL patterns (not paths), known methods, status codes.
    method = method if method in _METHODS else "other"
    return [(_field("http_requests", {"method": method, "route": route, "status": str(status)}), 1)]


def _token_increments(model: str, prompt: int, completion: int) -> list[tuple[str, float]]:
    increments: list[tuple[str, float]] = []
    if prompt:
        increments.append((_field("tokens", {"model": model, "kind": "prompt"}), int(prompt)))
    if completion:
        increments.append((_field("tokens", {"model": model, "kind": "completion"}), int(completion)))
    return increments


def metrics_count_request(*, method: str, route: str, status: int) -> None:
    _record(_request_increments(method, route, status))


async def metrics_count_request_async(*, method: str, route: str, status: int) -> None:
    await _record_async(_request_increments(method, route, status))


def metrics_observe_ttft(*, model: str, seconds: float) -> None:
    """Time from the request's arrival to its first token, in seconds."""
    _record(_increments_ttft(model, float(seconds)))


def metrics_count_tokens(*, model: str, prompt: int = 0, completion: int = 0) -> None:
    _record(_token_increments(model, prompt, completion))


def metrics_record_job(
    *, model: str, outcome: str, ttft_seconds: float | None, prompt_tokens: int, completion_tokens: int
) -> None:
    """Everything a job's end tells the metrics, in one round trip (call after the job's commit)."""
    increments: list[tuple[str, float]] = [(_field("jobs", {"model": model, "outcome": outcome}), 1)]
    if ttft_seconds is not None:
        increments += _increments_ttft(model, float(ttft_seconds))
    _record(increments + _token_increments(model, prompt_tokens, completion_tokens))


def metrics_counters() -> list[tuple[str, dict[str, str], float]]:
    """Every recorded sample as (name, labels, value); raises if Redis is unreachable."""
    client = redis_sync()
    if client is None:
        with _local_lock:
            raw = dict(_local)
    else:
        raw = {_text(field): float(value) for field, value in client.hgetall(_hash_key()).items()}
    return [(*_parse_field(field), value) for field, value in raw.items()]


# Gauges computed at scrape time ----------------------------------------------------------------

GaugeSamples = Iterable[tuple[tuple[str, ...], float]]


@dataclass(frozen=True)
class Gauge:
    name: str
    documentation: str
    labelnames: tuple[str, ...]
    callback: Callable[[], GaugeSamples]


_gauges: dict[str, Gauge] = {}


def metrics_gauge_register(
    *, name: str, documentation: str, labelnames: tuple[str, ...] = (), callback: Callable[[], GaugeSamples]
) -> None:
    """Register (or replace) a gauge computed at scrape time.

    `callback()` runs in the scrape (sync, ORM allowed) and returns (label values, value) pairs.
    Call it from an AppConfig.ready(); a name registered again replaces the earlier callback.
    """
    _gauges[name] = Gauge(name=name, documentation=documentation, labelnames=tuple(labelnames), callback=callback)


def metrics_gauges() -> list[Gauge]:
    return list(_gauges.values())
