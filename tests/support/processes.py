"""Real processes for end-to-end tests: daphne, Celery workers, worker programs, a private Redis.

Each process logs to a file under test-artifacts/ so a failing test can show what happened.
"""

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import redis

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(condition: Callable[[], bool], *, timeout: float, interval: float = 0.05, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what or condition}")


@dataclass
class Process:
    name: str
    popen: subprocess.Popen
    log_path: Path
    extra: dict = field(default_factory=dict)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def alive(self) -> bool:
        return self.popen.poll() is None

    def signal(self, signum: int) -> None:
        if self.alive():
            self.popen.send_signal(signum)

    def stop(self, timeout: float = 10) -> None:
        if not self.alive():
            return
        self.popen.send_signal(signal.SIGTERM)
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(5)


def start_process(name: str, args: list[str], env: dict[str, str]) -> Process:
    ARTIFACTS.mkdir(exist_ok=True)
    log_path = ARTIFACTS / f"{name}-{uuid.uuid4().hex[:8]}.log"
    log_file = log_path.open("w")
    # Never hand a child the browser fixture's async-safety override (tests/support/browser.py).
    inherited = {key: value for key, value in os.environ.items() if key != "DJANGO_ALLOW_ASYNC_UNSAFE"}
    popen = subprocess.Popen(
        args, cwd=ROOT, env={**inherited, **env}, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True
    )
    return Process(name=name, popen=popen, log_path=log_path)


def start_daphne(env: dict[str, str], *, port: int | None = None) -> Process:
    port = port or free_port()
    process = start_process(
        "daphne",
        [str(BIN / "daphne"), "-b", "127.0.0.1", "-p", str(port), "sogni_platform.asgi:application"],
        env,
    )
    process.extra["url"] = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        if not process.alive():
            raise RuntimeError(f"daphne exited:\n{process.log()}")
        try:
            return httpx.get(f"{process.extra['url']}/healthz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    wait_until(healthy, timeout=60, what="daphne /healthz")
    return process


def start_celery(env: dict[str, str], *, concurrency: int = 8) -> Process:
    process = start_process(
        "celery",
        [
            str(BIN / "celery"),
            "-A",
            "sogni_platform",
            "worker",
            "--pool=threads",
            f"--concurrency={concurrency}",
            "--without-gossip",
            "--without-mingle",
            "--loglevel=INFO",
        ],
        env,
    )
    wait_until(lambda: "ready." in process.log() or not process.alive(), timeout=60, what="celery worker ready")
    if not process.alive():
        raise RuntimeError(f"celery exited:\n{process.log()}")
    return process


class RedisServer:
    """A redis-server of its own on a spare port (the shared one serves other runs): stopped or killed and
    started again on the same port, or frozen."""

    def __init__(self) -> None:
        self.port = free_port()
        self.process: Process | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        args = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        self.process = start_process("redis", args, {})
        wait_until(self.answers, timeout=20, what="private redis answering")

    def answers(self) -> bool:
        try:
            return bool(redis.Redis(port=self.port, socket_timeout=0.5, socket_connect_timeout=0.5).ping())
        except redis.RedisError:
            return False

    def kill(self) -> None:
        self.process.signal(signal.SIGKILL)
        self.process.popen.wait(10)

    def freeze(self) -> None:
        self.process.signal(signal.SIGSTOP)

    def thaw(self) -> None:
        self.process.signal(signal.SIGCONT)

    def stop(self) -> None:
        if self.process is not None:
            self.thaw()  # a stopped process cannot act on SIGTERM
            self.process.stop()
