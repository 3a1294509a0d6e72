"""Starting and stopping the programs under test: the platform (`manage.py runlocal`) and Open WebUI."""

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
PLATFORM_READY = "Sogni platform running at"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(condition: Callable[[], object], *, timeout: float, what: str, interval: float = 0.5) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(interval)
    raise TimeoutError(f"{what}: not within {timeout:.0f}s")


@dataclass
class Process:
    name: str
    popen: subprocess.Popen
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self.log().splitlines()[-lines:])

    def check_alive(self) -> None:
        if self.popen.poll() is not None:
            raise RuntimeError(f"{self.name} exited with {self.popen.returncode}:\n{self.tail()}")

    def stop(self, timeout: float = 60) -> None:
        if self.popen.poll() is not None:
            return
        os.killpg(self.popen.pid, signal.SIGTERM)  # its own session: the children too
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait(10)


def start(name: str, args: list[str], *, env: dict[str, str], log_path: Path, cwd: Path = ROOT) -> Process:
    popen = subprocess.Popen(
        args, cwd=cwd, env=env, stdout=log_path.open("w"), stderr=subprocess.STDOUT, start_new_session=True
    )
    return Process(name=name, popen=popen, log_path=log_path)


def platform_env(data_dir: Path) -> dict[str, str]:
    """`make run` on a fresh machine: embedded mode (SQLite in `data_dir`, no Redis), none of our variables."""
    keep = ("PATH", "HOME", "LANG", "TMPDIR")
    env = {name: os.environ[name] for name in keep if name in os.environ}
    return {**env, "SOGNI_DATA_DIR": str(data_dir), "PYTHONUNBUFFERED": "1"}


def manage(*args: str) -> list[str]:
    return [sys.executable, str(ROOT / "manage.py"), *args]


def platform_start(*, work_dir: Path, port: int) -> tuple[Process, dict[str, str]]:
    """`make run`'s two steps (migrate, then runlocal with its local SmolLM2 worker) in a fresh data folder."""
    env = platform_env(work_dir / "platform-data")
    migrated = subprocess.run(manage("migrate", "--noinput"), cwd=ROOT, env=env, capture_output=True, text=True)
    if migrated.returncode != 0:
        raise RuntimeError(f"migrate failed:\n{migrated.stdout}{migrated.stderr}")
    process = start("platform", manage("runlocal", "--port", str(port)), env=env, log_path=work_dir / "platform.log")

    def ready() -> bool:
        process.check_alive()
        return PLATFORM_READY in process.log()

    wait_until(ready, timeout=300, what="the platform's ready line")
    return process, env


def platform_api_key(env: dict[str, str], email: str) -> str:
    """The README's quick test: `manage.py issue_api_key EMAIL` prints only the key."""
    issued = subprocess.run(manage("issue_api_key", email), cwd=ROOT, env=env, capture_output=True, text=True)
    if issued.returncode != 0:
        raise RuntimeError(f"issue_api_key failed: {issued.stderr}")
    return issued.stdout.strip()


def platform_wait_for_model(base_url: str, api_key: str, model: str, timeout: float = 300) -> None:
    """The local worker registers a little after the ready line: wait until a one-token reply comes back."""
    body = {"model": model, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 1}

    def answered() -> bool:
        try:
            response = httpx.post(
                f"{base_url}/chat/completions",
                json=body,
                headers={"Authorization": f"Bearer {api_key}"},
                timeout=120,
            )
        except httpx.HTTPError:
            return False
        return response.status_code == 200

    wait_until(answered, timeout=timeout, interval=2, what=f"a first reply from {model}")
