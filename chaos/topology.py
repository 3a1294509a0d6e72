"""What the chaos scenarios break: a Redis of the suite's own, `manage.py runlocal --no-worker` (daphne, with
Celery worker and beat under runlocal's supervision) on a fixed port, and scripted `sogni-worker` processes.

runlocal is the supervisor under test: it restarts Celery worker and beat when they exit, and it exits
when daphne dies, as a process manager's unit would; the suite then starts it again on the same port.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from bench import topology
from tests.support.processes import ARTIFACTS, ROOT, Process, free_port, start_process, wait_until

MODEL = topology.SCRIPTED_MODEL


def _command_line(pid: int) -> list[bytes]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return []


def _children(pid: int) -> list[int]:
    try:
        return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


@dataclass
class Platform:
    """runlocal on `port` with the chaos environment, and the scripted workers connected to it."""

    env: dict[str, str]
    keys: dict[str, str]
    port: int = field(default_factory=free_port)
    runlocal: Process | None = None
    workers: list[Process] = field(default_factory=list)
    restarts: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def launch(self) -> None:
        args = [sys.executable, str(ROOT / "manage.py"), "runlocal", "--no-worker", "--port", str(self.port)]
        self.runlocal = start_process("chaos-runlocal", args, self.env)

    def start(self) -> None:
        self.launch()
        wait_until(self.serving, timeout=120, interval=0.05, what="runlocal serving")
        wait_until(lambda: self.celery("worker") and self.celery("beat"), timeout=60, what="celery started")

    def serving(self) -> bool:
        if not self.runlocal.alive():
            raise RuntimeError(f"runlocal exited:\n{self.runlocal.log()[-4000:]}")
        try:
            return httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def child(self, *words: bytes) -> int | None:
        """The pid of runlocal's child whose command line has all these words."""
        for pid in _children(self.runlocal.popen.pid):
            command = _command_line(pid)
            if all(any(part.endswith(word) or part == word for part in command) for word in words):
                return pid
        return None

    def celery(self, kind: str) -> int | None:
        return self.child(b"celery", kind.encode())

    def server(self) -> int | None:
        return self.child(b"daphne")

    def celery_ready_count(self) -> int:
        """Celery workers that reported ready in runlocal's log (a restarted one adds one)."""
        return self.runlocal.log().count(" ready.")

    def start_workers(self, *, count: int, slots: int, rate: float, tokens: int) -> None:
        self.workers = topology.start_workers(
            url=self.url,
            key=self.keys["operator_key"],
            engine="scripted",
            model=MODEL,
            count=count,
            slots=slots,
            rate=rate,
            tokens=tokens,
            threads=1,
        )
        self.wait_workers_online()

    def wait_workers_online(self, timeout: float = 120) -> None:
        topology.wait_models_online(self.url, self.keys["client_key"], MODEL, self.workers, len(self.workers))

    def workers_online(self, *, since) -> int:
        """The suite's workers online on a connection made since `since` (a dead server's rows still say online)."""
        from inference.models import Worker

        names = [process.extra["name"] for process in self.workers]
        return Worker.objects.filter(name__in=names, status=Worker.Status.ONLINE, connected_at__gte=since).count()

    def stop(self) -> None:
        for process in self.workers:
            process.stop(timeout=15)
        if self.runlocal is not None:
            self.runlocal.stop(timeout=30)


def platform_env(*, database_url: str, redis_url: str, hold_grace_s: float, stripe_secret: str) -> dict[str, str]:
    """bench's production environment, with a short orphaned-hold grace and a Stripe webhook secret."""
    tag = f"chaos-{int(time.time())}"
    data_dir = ARTIFACTS / tag
    data_dir.mkdir(parents=True, exist_ok=True)
    return {
        **topology.platform_env(database_url=database_url, redis_url=redis_url, tag=tag),
        "HOLD_ORPHAN_GRACE_SECONDS": str(hold_grace_s),
        "STRIPE_SECRET_KEY": "sk_test_local",
        "STRIPE_WEBHOOK_SECRET": stripe_secret,
        "SOGNI_DATA_DIR": str(data_dir),  # runlocal's Celery beat schedule
        "EMAIL_BACKEND": "django.core.mail.backends.console.EmailBackend",
    }
