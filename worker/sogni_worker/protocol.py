"""Worker protocol v1 constants and frame builders (docs/worker-protocol.md)."""

from __future__ import annotations

from typing import Any

PROTOCOL_VERSION = 1
MAX_FRAME_BYTES = 64 * 1024

# Close codes after which reconnecting with the same settings cannot help.
FATAL_CLOSE_CODES = {
    4001: "the platform refused the API key (invalid or disabled)",
    4002: "the platform does not support this worker's protocol version",
    4008: "this worker was banned or paused by an operator",
}

ERROR_CODES = frozenset({"engine_error", "context_length_exceeded", "invalid_request", "overloaded", "cancelled"})
FINISH_REASONS = frozenset({"stop", "length", "tool_calls"})


def worker_url(platform: str) -> str:
    """ws(s)://host[:port] (or http(s)://) → the worker socket URL."""
    url = platform.strip().rstrip("/")
    if url.startswith("http://"):
        url = "ws://" + url[len("http://") :]
    elif url.startswith("https://"):
        url = "wss://" + url[len("https://") :]
    if not url.startswith(("ws://", "wss://")):
        raise ValueError(f"platform URL must start with ws://, wss://, http:// or https://, got {platform!r}")
    if not url.endswith("/ws/worker"):
        url += "/ws/worker"
    return url + "/"


def hello(
    *,
    worker_name: str,
    models: list[str],
    slots: int,
    engine: str,
    version: str,
    hardware: dict,
    features: tuple[str, ...] | list[str] = (),
    worker_id: str = "",
) -> dict:
    frame = {
        "type": "hello",
        "protocol": PROTOCOL_VERSION,
        "worker_name": worker_name,
        "models": models,
        "slots": slots,
        "engine": engine,
        "version": version,
        "hardware": hardware,
    }
    if worker_id:  # reconnecting: the platform hands this process its row back at once
        frame["worker_id"] = worker_id
    if features:
        frame["features"] = list(features)
    return frame


def error(job_id: str, code: str, message: str, *, retryable: bool = False) -> dict[str, Any]:
    assert code in ERROR_CODES, code
    return {"type": "error", "job_id": job_id, "code": code, "message": message[:2000], "retryable": retryable}
