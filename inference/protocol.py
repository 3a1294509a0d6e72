"""Worker protocol v1 (docs/worker-protocol.md), the platform's side: frame validation.

`parse_frame` turns a text frame into a checked dict or raises ProtocolViolation; the consumer
closes the connection with the violation's code. Pure: no I/O, no ORM.
"""

import json
import math

PROTOCOL_VERSION = 1

CLOSE_INVALID_KEY = 4001
CLOSE_UNSUPPORTED_PROTOCOL = 4002
CLOSE_PROTOCOL_VIOLATION = 4003
CLOSE_HELLO_TIMEOUT = 4004
CLOSE_TOO_MANY_CONNECTIONS = 4005
CLOSE_BANNED = 4008
CLOSE_HEARTBEAT_TIMEOUT = 4009

FINISH_REASONS = ("stop", "length", "tool_calls")
ERROR_CODES = ("engine_error", "context_length_exceeded", "invalid_request", "overloaded", "cancelled")

MAX_JOB_ID = 64
MAX_NAME = 64
MAX_MODELS = 32
MAX_MODEL_ID = 128
MAX_SLOTS = 64
MAX_HARDWARE_BYTES = 4096
MAX_TOOL_CALLS = 64
MAX_RUNNING = 256
MAX_MESSAGE = 4096
MAX_FRAME_TOKENS = 65_536
MAX_BATCHED_DELTAS = 256
FEATURES = ("deltas",)  # announced in `welcome`: what a worker may send beyond version 1's frames
# What a worker may announce in `hello.features`: jobs beyond chat it can serve. Others are ignored.
JOB_FEATURES = ("logprobs", "prompt")
MAX_FEATURES = 16
MAX_TOP_LOGPROBS = 20
MAX_LOGPROB_ENTRIES = 4096
MAX_TOKEN_TEXT = 1024
MAX_USAGE_TOKENS = 10_000_000


class ProtocolViolation(Exception):
    def __init__(self, reason: str, *, code: int = CLOSE_PROTOCOL_VIOLATION):
        super().__init__(reason)
        self.reason = reason
        self.code = code


def _str(frame: dict, name: str, *, max_length: int, min_length: int = 0, required: bool = True) -> str:
    value = frame.get(name)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or not min_length <= len(value) <= max_length:
        raise ProtocolViolation(f"{frame['type']}.{name} must be a string of {min_length}-{max_length} characters")
    return value


def _int(frame: dict, name: str, *, minimum: int, maximum: int, required: bool = True, default: int = 0) -> int:
    value = frame.get(name)
    if value is None and not required:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= maximum:
        raise ProtocolViolation(f"{frame['type']}.{name} must be an integer in {minimum}..{maximum}")
    return value


def _choice(frame: dict, name: str, choices: tuple[str, ...]) -> str:
    value = frame.get(name)
    if value not in choices:
        raise ProtocolViolation(f"{frame['type']}.{name} must be one of {', '.join(choices)}")
    return value


def _hello(frame: dict) -> dict:
    protocol = frame.get("protocol")
    if protocol != PROTOCOL_VERSION or isinstance(protocol, bool):
        raise ProtocolViolation(
            f"unsupported protocol {protocol!r}; this platform speaks {PROTOCOL_VERSION}",
            code=CLOSE_UNSUPPORTED_PROTOCOL,
        )
    models = frame.get("models")
    if not isinstance(models, list) or not 1 <= len(models) <= MAX_MODELS:
        raise ProtocolViolation(f"hello.models must be a list of 1-{MAX_MODELS} model ids")
    for model_id in models:
        if not isinstance(model_id, str) or not 1 <= len(model_id) <= MAX_MODEL_ID:
            raise ProtocolViolation(f"hello.models entries must be strings of 1-{MAX_MODEL_ID} characters")
    features = frame.get("features", [])
    if not isinstance(features, list) or len(features) > MAX_FEATURES:
        raise ProtocolViolation(f"hello.features must be a list of at most {MAX_FEATURES} names")
    if not all(isinstance(name, str) and 1 <= len(name) <= 64 for name in features):
        raise ProtocolViolation("hello.features entries must be strings of 1-64 characters")
    hardware = frame.get("hardware", {})
    if not isinstance(hardware, dict) or len(json.dumps(hardware)) > MAX_HARDWARE_BYTES:
        raise ProtocolViolation(f"hello.hardware must be an object of at most {MAX_HARDWARE_BYTES} bytes")
    return {
        "type": "hello",
        "worker_name": _str(frame, "worker_name", min_length=1, max_length=MAX_NAME),
        "models": models,
        "slots": _int(frame, "slots", minimum=1, maximum=MAX_SLOTS),
        "engine": _str(frame, "engine", max_length=64, required=False),
        "version": _str(frame, "version", max_length=64, required=False),
        "hardware": hardware,
        # Reconnecting: the worker_id its last `welcome` gave this worker process.
        "worker_id": _str(frame, "worker_id", max_length=32, required=False),
        "features": sorted(set(features) & set(JOB_FEATURES)),
    }


def _heartbeat(frame: dict) -> dict:
    running = frame.get("running", [])
    if not isinstance(running, list) or len(running) > MAX_RUNNING:
        raise ProtocolViolation(f"heartbeat.running must be a list of at most {MAX_RUNNING} job ids")
    if not all(isinstance(job_id, str) and len(job_id) <= MAX_JOB_ID for job_id in running):
        raise ProtocolViolation("heartbeat.running entries must be job ids")
    return {"type": "heartbeat", "running": running}


def _tool_calls(frame: dict) -> list[dict]:
    calls = frame.get("tool_calls")
    if calls is None:
        return []
    if not isinstance(calls, list) or len(calls) > MAX_TOOL_CALLS:
        raise ProtocolViolation(f"delta.tool_calls must be a list of at most {MAX_TOOL_CALLS} fragments")
    checked = []
    for call in calls:
        if not isinstance(call, dict):
            raise ProtocolViolation("delta.tool_calls entries must be objects")
        call = {**call, "type": "delta.tool_calls[]"}
        fragment: dict[str, int | str] = {"index": _int(call, "index", minimum=0, maximum=MAX_TOOL_CALLS - 1)}
        for name in ("id", "name", "arguments"):
            if call.get(name) is not None:
                fragment[name] = _str(call, name, max_length=65_536)
        checked.append(fragment)
    return checked


def _logprob(entry, name: str) -> dict:
    """One token's entry: {token, logprob, bytes, top_logprobs?} as OpenAI's ChatCompletionTokenLogprob."""
    if not isinstance(entry, dict):
        raise ProtocolViolation(f"{name} entries must be objects")
    token, logprob, raw = entry.get("token"), entry.get("logprob"), entry.get("bytes")
    if not isinstance(token, str) or len(token) > MAX_TOKEN_TEXT:
        raise ProtocolViolation(f"{name}.token must be a string of at most {MAX_TOKEN_TEXT} characters")
    if isinstance(logprob, bool) or not isinstance(logprob, int | float) or not -1e9 <= logprob <= 0:
        raise ProtocolViolation(f"{name}.logprob must be a number <= 0")
    if raw is not None and not (
        isinstance(raw, list) and len(raw) <= 4 * MAX_TOKEN_TEXT and all(type(b) is int and 0 <= b < 256 for b in raw)
    ):
        raise ProtocolViolation(f"{name}.bytes must be a list of byte values")
    checked = {"token": token, "logprob": float(logprob), "bytes": raw}
    return checked


def _logprobs(frame: dict) -> list[dict]:
    entries = frame.get("logprobs")
    if entries is None:
        return []
    if not isinstance(entries, list) or len(entries) > MAX_LOGPROB_ENTRIES:
        raise ProtocolViolation(f"delta.logprobs must be a list of at most {MAX_LOGPROB_ENTRIES} entries")
    checked = []
    for entry in entries:
        item = _logprob(entry, "delta.logprobs[]")
        tops = entry.get("top_logprobs") or []
        if not isinstance(tops, list) or len(tops) > MAX_TOP_LOGPROBS:
            raise ProtocolViolation(f"delta.logprobs[].top_logprobs must be a list of at most {MAX_TOP_LOGPROBS}")
        item["top_logprobs"] = [_logprob(top, "delta.logprobs[].top_logprobs[]") for top in tops]
        checked.append(item)
    return checked


def _delta(frame: dict) -> dict:
    return {
        "type": "delta",
        "job_id": _str(frame, "job_id", min_length=1, max_length=MAX_JOB_ID),
        "content": _str(frame, "content", max_length=65_536, required=False),
        "reasoning": _str(frame, "reasoning", max_length=65_536, required=False),
        "tool_calls": _tool_calls(frame),
        "tokens": _int(frame, "tokens", minimum=0, maximum=MAX_FRAME_TOKENS, required=False),
        "logprobs": _logprobs(frame),
    }


def _deltas(frame: dict) -> dict:
    """Deltas of one or more jobs ready at the same time, in one frame (the `deltas` feature)."""
    items = frame.get("deltas")
    if not isinstance(items, list) or not 1 <= len(items) <= MAX_BATCHED_DELTAS:
        raise ProtocolViolation(f"deltas.deltas must be a list of 1 to {MAX_BATCHED_DELTAS} deltas")
    if not all(isinstance(item, dict) for item in items):
        raise ProtocolViolation("deltas.deltas entries must be objects")
    return {"type": "deltas", "deltas": [_delta({**item, "type": "deltas.deltas[]"}) for item in items]}


def _done(frame: dict) -> dict:
    usage = frame.get("usage", {})
    if not isinstance(usage, dict):
        raise ProtocolViolation("done.usage must be an object")
    usage = {**usage, "type": "done.usage"}
    return {
        "type": "done",
        "job_id": _str(frame, "job_id", min_length=1, max_length=MAX_JOB_ID),
        "finish_reason": _choice(frame, "finish_reason", FINISH_REASONS),
        "prompt_tokens": _int(usage, "prompt_tokens", minimum=0, maximum=MAX_USAGE_TOKENS, required=False),
        "completion_tokens": _int(usage, "completion_tokens", minimum=0, maximum=MAX_USAGE_TOKENS, required=False),
        "reasoning_tokens": _int(usage, "reasoning_tokens", minimum=0, maximum=MAX_USAGE_TOKENS, required=False),
    }


def _error(frame: dict) -> dict:
    retryable = frame.get("retryable", False)
    if not isinstance(retryable, bool):
        raise ProtocolViolation("error.retryable must be a boolean")
    return {
        "type": "error",
        "job_id": _str(frame, "job_id", min_length=1, max_length=MAX_JOB_ID),
        "code": _choice(frame, "code", ERROR_CODES),
        "message": _str(frame, "message", max_length=MAX_MESSAGE, required=False),
        "retryable": retryable,
    }


PARSERS = {
    "hello": _hello,
    "heartbeat": _heartbeat,
    "delta": _delta,
    "deltas": _deltas,
    "done": _done,
    "error": _error,
    "draining": lambda frame: {"type": "draining"},
}


def _reject_constant(name: str):
    raise ValueError(f"{name} is not JSON")


def parse_frame(text: str | None, *, max_bytes: int) -> dict:
    """A checked worker frame; ProtocolViolation for anything the protocol does not allow."""
    if text is None:
        raise ProtocolViolation("binary frames are not part of the protocol")
    if len(text) > max_bytes or len(text.encode("utf-8")) > max_bytes:
        raise ProtocolViolation(f"frame larger than {max_bytes} bytes")
    try:
        frame = json.loads(text, parse_constant=_reject_constant)
    except (ValueError, RecursionError):
        raise ProtocolViolation("frame is not valid JSON") from None
    if not isinstance(frame, dict):
        raise ProtocolViolation("frame is not a JSON object")
    kind = frame.get("type")
    parser = PARSERS.get(kind) if isinstance(kind, str) else None
    if parser is None:
        raise ProtocolViolation(f"unknown frame type {str(kind)[:40]!r}")
    return parser(frame)


class RateLimiter:
    """Token bucket: `rate` messages per second on average, bursts up to one second's worth."""

    def __init__(self, rate: float, *, now: float):
        self.rate = rate
        self.allowance = rate
        self.updated = now

    def allow(self, now: float, cost: int = 1) -> bool:
        self.allowance = min(self.rate, self.allowance + (now - self.updated) * self.rate)
        self.updated = now
        if self.allowance < cost or math.isnan(self.allowance):
            return False
        self.allowance -= cost
        return True
