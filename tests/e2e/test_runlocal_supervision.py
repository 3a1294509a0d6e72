"""`manage.py runlocal` in the production topology (PostgreSQL + Redis): it keeps Celery worker and beat
running, and it is serving again right after a restart on the same port."""

import os
import signal
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.e2e.test_make_run import children_of, gone
from tests.support.processes import ROOT, free_port, start_process, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

READY = "Sogni platform running at"


def _runlocal(live_env, port: int):
    args = [sys.executable, str(ROOT / "manage.py"), "runlocal", "--no-worker", "--port", str(port)]
    process = start_process("runlocal", args, live_env)
    wait_until(lambda: READY in process.log() or not process.alive(), timeout=60, what="runlocal ready")
    assert process.alive(), process.log()
    return process


def _celery_children(pid: int, kind: str) -> list[int]:
    found = []
    for child in children_of(pid):
        try:
            command = Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0")
        except FileNotFoundError:
            continue
        if any(part.endswith(b"celery") for part in command) and kind.encode() in command:
            found.append(child)
    return found


def test_a_killed_celery_worker_and_beat_are_running_again_within_10s(live_env, transactional_db):
    runlocal = _runlocal(live_env, free_port())
    try:
        for kind in ("worker", "beat"):
            (before,) = _celery_children(runlocal.popen.pid, kind)
            killed = time.monotonic()
            os.kill(before, signal.SIGKILL)
            wait_until(lambda b=before: gone(b), timeout=10, what=f"celery {kind} gone")
            wait_until(
                lambda k=kind: _celery_children(runlocal.popen.pid, k), timeout=10, what=f"celery {kind} restarted"
            )
            assert time.monotonic() - killed <= 10
            assert "restarting it in" in runlocal.log()
        assert runlocal.alive()
    finally:
        runlocal.stop(20)


def test_restarted_on_the_same_port_it_serves_again_at_once(live_env, transactional_db):
    port = free_port()
    url = f"http://127.0.0.1:{port}/healthz"
    first = _runlocal(live_env, port)
    try:
        # Connections the server closed linger in TIME_WAIT on its port after it stops.
        for _ in range(3):
            assert httpx.get(url, headers={"Connection": "close"}, timeout=5).status_code == 200
    finally:
        first.stop(20)
    restarted = time.monotonic()
    second = _runlocal(live_env, port)
    try:
        assert httpx.get(url, timeout=5).status_code == 200
        assert time.monotonic() - restarted <= 15, "slower than a restart should be"
    finally:
        second.stop(20)
