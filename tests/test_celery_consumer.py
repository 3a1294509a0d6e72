"""The Celery worker tries an unreachable broker again within seconds (sogni_platform.celery_consumer).

It overrides an undocumented method of Celery's consumer: these fail if a Celery or kombu upgrade
makes the override stop taking effect (back to kombu's 2, 4, 6 … 30 s between attempts).
"""

import socket
import time
import types

import pytest
from celery import Celery
from kombu.exceptions import OperationalError
from kombu.utils.imports import symbol_by_name


def unused_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_the_platform_celery_worker_uses_the_fast_reconnecting_consumer():
    from sogni_platform.celery import app
    from sogni_platform.celery_consumer import FastReconnectConsumer

    assert symbol_by_name(app.conf.worker_consumer) is FastReconnectConsumer


def test_a_broker_that_is_down_is_tried_three_more_times_within_three_seconds():
    from sogni_platform.celery_consumer import FastReconnectConsumer

    app = Celery(set_as_current=False, broker=f"redis://127.0.0.1:{unused_port()}/0")
    app.conf.broker_connection_max_retries = 3
    consumer = FastReconnectConsumer(
        on_task_request=None, app=app, controller=types.SimpleNamespace(use_eventloop=False)
    )
    started = time.monotonic()
    with pytest.raises(OperationalError):
        consumer.ensure_connected(app.connection_for_read())
    elapsed = time.monotonic() - started
    # 0.2 + 0.5 + 0.8 s; Celery's own consumer takes 2 + 4 + 6 = 12 s.
    assert elapsed < 3, f"three reconnect attempts took {elapsed:.1f} s"
