"""`make run`: the whole product on one machine.

One daphne process serves the API and the worker socket: in the embedded mode the channel layer is
in memory, so the local worker must talk to the very process that serves the API. Next to it runs
one `sogni-worker` (llama-cpp engine, SmolLM2 on the CPU) under a local operator account. SIGINT or
SIGTERM stops the worker first (it finishes running jobs), then daphne.
"""

import ctypes
import io
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.db import connections

from sogni_platform.env import env_str

LOCAL_MODEL = "smollm2-135m-instruct-q4_1"
LOCAL_WORKER_NAME = "local-cpu"
BIN = Path(sys.executable).parent
WORKER_DRAIN_SECONDS = 60
STOP_SECONDS = 10
RESTART_DELAY_MAX = 30
RESTART_HEALTHY_SECONDS = 60  # a child that ran this long restarts after the shortest delay again


def local_operator_key(*, email: str) -> str:
    """The local operator's raw key, creating the account on first use (same rules as issue_api_key)."""
    out = io.StringIO()
    call_command("issue_api_key", email, stdout=out, stderr=io.StringIO())
    return out.getvalue().strip()


def _check_port_free(host: str, port: int) -> None:
    """Fail before starting anything: another server on the port would answer our health checks.
    Connections of a server that just stopped (TIME_WAIT) do not count, as they do not for the server."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            raise CommandError(f"Cannot listen on {host}:{port} ({error.strerror}); set PORT or --port.") from error


def _healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _die_with_parent() -> None:
    """Runs in the child before exec: on Linux, get SIGTERM if runlocal itself dies (even by SIGKILL)."""
    if sys.platform.startswith("linux"):
        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def _spawn(args: list[str], env: dict[str, str]) -> subprocess.Popen:
    # Own process group: a terminal's Ctrl-C reaches runlocal only, which stops the children in order.
    return subprocess.Popen(args, env=env, start_new_session=True, preexec_fn=_die_with_parent)


def _stop(name: str, process: subprocess.Popen, timeout: float, out) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        out.write(f"{name} did not stop within {timeout:.0f}s; killing it.")
        process.kill()
        process.wait(5)


class Command(BaseCommand):
    help = "Run the platform (daphne) and one local CPU worker serving SmolLM2, on one machine."

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=int(os.environ.get("PORT") or 8000))
        parser.add_argument("--no-worker", action="store_true", help="serve the platform without the local worker")
        parser.add_argument("--threads", type=int, default=None, help="CPU threads for the local worker's model")

    def handle(self, *args, host: str, port: int, no_worker: bool, threads: int | None, **options):
        self.stop_signal: int | None = None
        logging.getLogger("httpx").setLevel(logging.WARNING)  # no log line per health poll
        signal.signal(signal.SIGINT, self._on_signal)
        signal.signal(signal.SIGTERM, self._on_signal)

        url = f"http://{host}:{port}"
        _check_port_free(host, port)
        call_command("migrate", interactive=False, verbosity=0)
        email = env_str("LOCAL_WORKER_EMAIL", "operator@localhost")
        worker_args = None if no_worker else self._worker_args(url, threads)
        key = None if no_worker else local_operator_key(email=email)
        connections.close_all()

        children: list[tuple[str, subprocess.Popen, float]] = []
        failure = None
        try:
            failure = self._run(children, host=host, port=port, worker_args=worker_args, key=key, email=email)
        finally:
            for name, process, timeout in children:
                _stop(name, process, timeout, self.stderr)
        if failure:
            raise CommandError(failure)
        self.stdout.write("Stopped.")

    def _run(self, children, *, host: str, port: int, worker_args, key: str | None, email: str) -> str | None:
        """Start the children (appending them to `children` for the caller to stop) and supervise them."""
        from inference.selectors import model_has_online_worker

        url = f"http://{host}:{port}"
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        daphne = _spawn([str(BIN / "daphne"), "-b", host, "-p", str(port), "sogni_platform.asgi:application"], env)
        children.append(("daphne", daphne, STOP_SECONDS))
        self.restartable: dict[str, list[str]] = {}
        if not settings.CELERY_TASK_ALWAYS_EAGER:  # REDIS_URL set: tasks need a Celery worker
            # Gossip and mingle only serve remote control between workers; their restart after a broker
            # drop is where kombu fails (AttributeError on a closed connection).
            celery = [str(BIN / "celery"), "-A", "sogni_platform", "worker", "--pool=threads", "--loglevel=INFO"]
            celery += ["--without-gossip", "--without-mingle"]
            # Periodic sweeps (lease reaper, stale workers, escrow release). Without Redis the worker
            # consumers run the lease reaper in the server process instead (inference/consumers.py).
            schedule = settings.DATA_DIR / "celerybeat-schedule"
            schedule.parent.mkdir(parents=True, exist_ok=True)
            beat = [str(BIN / "celery"), "-A", "sogni_platform", "beat", "--loglevel=INFO", f"--schedule={schedule}"]
            self.restartable = {"celery": celery, "celery beat": beat}
            for name, args in self.restartable.items():
                children.append((name, _spawn(args, env), STOP_SECONDS))
        if not self._wait(lambda: _healthy(url), "daphne", daphne, timeout=60, what=f"{url}/healthz answering"):
            return None
        if worker_args is not None and key is not None:
            worker = _spawn(worker_args, {**env, "SOGNI_API_KEY": key})
            children.insert(0, ("the local worker", worker, WORKER_DRAIN_SECONDS))
            online = lambda: model_has_online_worker(model_id=LOCAL_MODEL)  # noqa: E731
            if not self._wait(online, "the local worker", worker, timeout=300, what="the local worker online"):
                return None
            connections.close_all()
        self._banner(url, email if worker_args else None)
        return self._supervise(children)

    def _on_signal(self, signum, frame) -> None:
        self.stop_signal = signum

    def _worker_args(self, url: str, threads: int | None) -> list[str]:
        executable = BIN / "sogni-worker"
        if not executable.exists():
            raise CommandError(f"{executable} is missing: install the worker with `pip install -e './worker[llama]'`.")
        args = [str(executable), "--platform", url, "--name", LOCAL_WORKER_NAME]
        args += ["--engine", "llama-cpp", "--models", LOCAL_MODEL, "--slots", "1"]
        if threads:
            args += ["--threads", str(threads)]
        return args

    def _wait(self, condition, name: str, process: subprocess.Popen, *, timeout: float, what: str) -> bool:
        """True once `condition` holds; False if a stop signal came first. Fails if `process` dies."""
        deadline = time.monotonic() + timeout
        while self.stop_signal is None:
            if process.poll() is not None:
                raise CommandError(f"{name} exited with code {process.returncode} before {what}")
            if condition():
                return True
            if time.monotonic() > deadline:
                raise CommandError(f"timed out after {timeout:.0f}s waiting for {what}")
            time.sleep(0.2)
        return False

    def _supervise(self, children: list[tuple[str, subprocess.Popen, float]]) -> str | None:
        """Until a stop signal; returns why it stopped early (daphne died), else None. Celery worker and
        beat are restarted when they exit, after a delay that doubles while they keep dying young."""
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        started = {name: time.monotonic() for name, _, _ in children}
        delays: dict[str, float] = {}
        due: dict[str, float] = {}  # name -> when to start it again
        while self.stop_signal is None:
            now = time.monotonic()
            for entry in list(children):
                name, process, _ = entry
                if name in due or process.poll() is None:
                    continue
                if name == "daphne":
                    return f"daphne exited with code {process.returncode}"
                if name not in self.restartable:
                    self.stderr.write(
                        f"{name.capitalize()} exited with code {process.returncode}; the platform keeps serving."
                    )
                    children.remove(entry)
                    continue
                young = now - started[name] < RESTART_HEALTHY_SECONDS
                delays[name] = min(delays.get(name, 0.5) * 2, RESTART_DELAY_MAX) if young else 1.0
                due[name] = now + delays[name]
                self.stderr.write(
                    f"{name.capitalize()} exited with code {process.returncode}; restarting it in {delays[name]:.0f}s."
                )
            for name, at in list(due.items()):
                if at <= now:
                    del due[name]
                    index = next(i for i, child in enumerate(children) if child[0] == name)
                    children[index] = (name, _spawn(self.restartable[name], env), STOP_SECONDS)
                    started[name] = now
                    self.stdout.write(f"{name.capitalize()} restarted.")
            time.sleep(0.2)
        return None

    def _banner(self, url: str, operator_email: str | None) -> None:
        python = os.path.relpath(sys.executable)
        python = sys.executable if python.startswith("..") else python
        if settings.EMBEDDED:
            mode = "embedded (SQLite, in-memory channel layer, eager Celery)"
        else:
            mode = "PostgreSQL + " + ("Redis, a Celery worker" if settings.REDIS_URL else "in-memory channel layer")
        worker = (
            f'Local worker "{LOCAL_WORKER_NAME}" serves {LOCAL_MODEL} on the CPU for {operator_email}.'
            if operator_email
            else "No local worker (--no-worker)."
        )
        body = json.dumps({"model": LOCAL_MODEL, "messages": [{"role": "user", "content": "Say hello"}]})
        emails = {
            "django.core.mail.backends.console.EmailBackend": "Emails (the verification link) are printed here.",
            "django.core.mail.backends.smtp.EmailBackend": f"Emails go out by SMTP via {settings.EMAIL_HOST}.",
        }.get(settings.EMAIL_BACKEND, f"Emails go to {settings.EMAIL_BACKEND}.")
        self.stdout.write(
            "\n".join(
                [
                    "",
                    f"Sogni platform running at {url}  [{mode}]",
                    worker,
                    f"Sign up at {url}/signup/. {emails}",
                    f"Get an API key:  KEY=$({python} manage.py issue_api_key you@example.com)",
                    f'Quick test:      curl {url}/v1/chat/completions -H "Authorization: Bearer $KEY" '
                    f"-H \"Content-Type: application/json\" -d '{body}'",
                    "Stop with Ctrl-C.",
                    "",
                ]
            )
        )
