"""Request ids in every log line: a context variable, a logging filter, and a JSON formatter.

The request id middleware sets `request_id_var` for the life of a request; asgiref copies the
context into `sync_to_async` threads, so sync views and ORM code log the same id.
"""

import contextvars
import json
import logging
import re
import secrets
from datetime import UTC, datetime

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)

REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")

# Attributes every LogRecord has; anything else on a record came from `extra=` and is logged as a field.
_RECORD_ATTRS = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "request_id"}


def request_id_new() -> str:
    return f"req_{secrets.token_hex(12)}"


def request_id_accept(incoming: str | None) -> str:
    """The client's `x-request-id` when it is safe to echo and log (≤ 64 of [A-Za-z0-9._-]), else a new id."""
    if incoming and REQUEST_ID_RE.match(incoming):
        return incoming
    return request_id_new()


class RequestIdFilter(logging.Filter):
    """Puts `record.request_id` ("-" outside a request) on every record passing the handler."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "request_id", None):
            record.request_id = request_id_var.get() or "-"
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, message, request_id, extras, exception."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": datetime.fromtimestamp(record.created, tz=UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", None) or request_id_var.get(),
        }
        for key, value in record.__dict__.items():
            if key not in _RECORD_ATTRS and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, default=str)


PLAIN_FORMAT = "%(asctime)s %(levelname)s [%(request_id)s] %(name)s %(message)s"


def logging_config(*, log_format: str, level: str) -> dict:
    """The LOGGING setting: plain text for development, JSON (LOG_FORMAT=json) for log shippers."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"request_id": {"()": "sogni_platform.logging.RequestIdFilter"}},
        "formatters": {
            "plain": {"format": PLAIN_FORMAT},
            "json": {"()": "sogni_platform.logging.JsonFormatter"},
        },
        "handlers": {
            "console": {
                "class": "logging.StreamHandler",
                "formatter": "json" if log_format == "json" else "plain",
                "filters": ["request_id"],
            }
        },
        "root": {"handlers": ["console"], "level": level},
        "loggers": {"django.channels.server": {"level": "WARNING"}},
    }


# Celery: a task carries the id of the request that queued it, so the worker's log lines about a
# job share the request's id. Connected here because settings import this module in every process.
def _task_publish(headers=None, **kwargs) -> None:
    request_id = request_id_var.get()
    if request_id and headers is not None:
        headers.setdefault("request_id", request_id)


def _task_prerun(task=None, **kwargs) -> None:
    request = getattr(task, "request", None)
    if getattr(request, "is_eager", False):
        return  # runs inside the request (embedded mode): the id is already set
    request_id = getattr(request, "request_id", None)
    request_id_var.set(request_id if isinstance(request_id, str) and REQUEST_ID_RE.match(request_id) else None)


def _task_postrun(task=None, **kwargs) -> None:
    if not getattr(getattr(task, "request", None), "is_eager", False):
        request_id_var.set(None)


def _keep_django_logging(**kwargs) -> None:
    """Connecting setup_logging stops Celery replacing the LOGGING handlers (and their request ids)."""


def _connect_celery_signals() -> None:
    try:
        from celery import signals
    except ImportError:  # pragma: no cover - Celery is a dependency
        return
    signals.before_task_publish.connect(_task_publish, weak=False)
    signals.task_prerun.connect(_task_prerun, weak=False)
    signals.task_postrun.connect(_task_postrun, weak=False)
    signals.setup_logging.connect(_keep_django_logging, weak=False)


_connect_celery_signals()
