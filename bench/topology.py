"""The production topology on this machine, started and stopped by the bench: PostgreSQL database
(created and migrated), Redis, an ASGI server (daphne or uvicorn), a Celery worker (threads pool,
prefetch 1), `sogni-worker` processes; and the engine alone (`sogni-worker serve-openai`)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse, urlunparse

import httpx

from tests.support.processes import BIN, ROOT, Process, free_port, start_process, wait_until

# The same development-only secrets pyproject's pytest env sets; the bench runs production mode locally.
SECRETS = {
    "DJANGO_SECRET_KEY": "test-secret-key-not-for-production",
    "API_KEY_HMAC_SECRET": "test-hmac-secret-not-for-production",
    "API_KEY_ENCRYPTION_KEY": "Vo_fsoR1pQ3zcqyvW4JKAQ5NQ4Hkq1OzZdTXmsfpL3s=",
}
SCRIPTED_MODEL = "qwen3.5-35b-a3b-gguf-q4km"  # any catalog id; the scripted workers serve only this one
LLAMA_MODEL = "smollm2-135m-instruct-q4_1"
MAX_SLOTS = 64  # sogni-worker's --slots ceiling


def database_create(database_url: str) -> None:
    """CREATE DATABASE if it does not exist (connecting to the server's `postgres` database)."""
    import psycopg

    parsed = urlparse(database_url)
    name = parsed.path.lstrip("/")
    admin = urlunparse(parsed._replace(path="/postgres"))
    with psycopg.connect(admin, autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is None:
            conn.execute(f'CREATE DATABASE "{name}"')


def platform_env(*, database_url: str, redis_url: str, tag: str) -> dict[str, str]:
    return {
        **SECRETS,
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "CELERY_QUEUE": f"bench-{tag}",
        "CHANNEL_LAYER_PREFIX": f"bench-{tag}",
        "DJANGO_DEBUG": "0",
        "DB_POOL_MAX_SIZE": "16",  # the production recommendation (docs/performance.md); --env DB_POOL_MAX_SIZE=0: off
        "PYTHONUNBUFFERED": "1",
        "DJANGO_SETTINGS_MODULE": "sogni_platform.settings",
    }


def _run(args: list[str], env: dict[str, str]) -> str:
    done = subprocess.run(args, cwd=ROOT, env={**os.environ, **env}, capture_output=True, text=True, timeout=600)
    if done.returncode:
        raise RuntimeError(f"{' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout


def database_prepare(env: dict[str, str]) -> dict[str, str]:
    """Create + migrate the bench database; the bench accounts' keys."""
    database_create(env["DATABASE_URL"])
    _run([sys.executable, "manage.py", "migrate", "--noinput"], env)
    keys = json.loads(_run([sys.executable, "-m", "bench.setup_db"], env).strip().splitlines()[-1])
    database_vacuum(env["DATABASE_URL"])
    return keys


def database_vacuum(database_url: str) -> None:
    """Every run starts without the dead rows of the runs before it: the bench database is reused, and
    with autovacuum off, dead worker index entries pile up for each dispatch to step over."""
    import psycopg

    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")


def _wait_http(process: Process, url: str) -> None:
    def ready() -> bool:
        if not process.alive():
            raise RuntimeError(f"{process.name} exited:\n{process.log()[-4000:]}")
        try:
            return httpx.get(url, timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    wait_until(ready, timeout=90, interval=0.1, what=url)


def start_server(env: dict[str, str], *, server: str, processes: int = 1) -> Process:
    port = free_port()
    if server == "daphne":
        args = [str(BIN / "daphne"), "-b", "127.0.0.1", "-p", str(port), "--access-log", "/dev/null"]
    else:
        args = [
            str(BIN / "uvicorn"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--lifespan",
            "off",
            "--no-access-log",
            "--log-level",
            "warning",
            "--ws",
            "websockets-sansio",
            "--loop",
            "uvloop",
            "--http",
            "httptools",
        ]
    if processes > 1:
        if server != "uvicorn":
            raise ValueError("several server processes: uvicorn only (daphne needs a process manager)")
        args += ["--workers", str(processes)]
    process = start_process(server, [*args, "sogni_platform.asgi:application"], env)
    process.extra["url"] = f"http://127.0.0.1:{port}"
    _wait_http(process, f"{process.extra['url']}/healthz")
    return process


def start_celery(env: dict[str, str]) -> Process:
    args = [
        str(BIN / "celery"),
        "-A",
        "sogni_platform",
        "worker",
        "--pool=threads",
        "--concurrency=8",
        "--prefetch-multiplier=1",
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
        "--loglevel=INFO",
    ]
    process = start_process("celery", args, env)
    wait_until(lambda: "ready." in process.log() or not process.alive(), timeout=90, what="celery ready")
    if not process.alive():
        raise RuntimeError(f"celery exited:\n{process.log()[-4000:]}")
    return process


def engine_args(engine: str, *, slots: int, rate: float, tokens: int, threads: int) -> list[str]:
    args = [
        "--engine",
        engine,
        "--slots",
        str(slots),
        "--log-level",
        os.environ.get("BENCH_WORKER_LOG_LEVEL", "INFO"),
    ]
    if engine == "scripted":
        return args + ["--scripted-rate", str(rate), "--scripted-tokens", str(tokens)]
    return args + ["--n-ctx", "1024", "--threads", str(threads)]


def start_direct(engine: str, *, slots: int, rate: float, tokens: int, threads: int) -> Process:
    port = free_port()
    args = [str(BIN / "sogni-worker"), "serve-openai", "--port", str(port), "--model-name", f"direct-{engine}"]
    process = start_process(
        f"direct-{engine}", args + engine_args(engine, slots=slots, rate=rate, tokens=tokens, threads=threads), {}
    )
    process.extra["url"] = f"http://127.0.0.1:{port}"
    _wait_http(process, f"{process.extra['url']}/v1/models")
    return process


def start_llama_server(*, threads: int) -> Process:
    """llama-cpp-python's own OpenAI-compatible server (`python -m llama_cpp.server`) on the same model
    file, context and threads as the llama-cpp worker: the engine alone as its authors serve it. Requests
    queue for the model as on the worker's one slot (by default a new request cuts the running one off)."""
    from sogni_worker.engines import default_model_path

    port = free_port()
    args = [
        sys.executable,
        "-m",
        "llama_cpp.server",
        "--model",
        str(default_model_path()),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--n_ctx",
        "1024",
        "--n_threads",
        str(threads),
        "--verbose",
        "False",
        "--interrupt_requests",
        "False",
    ]
    process = start_process("llama-cpp-server", args, {})
    process.extra["url"] = f"http://127.0.0.1:{port}"
    _wait_http(process, f"{process.extra['url']}/v1/models")
    return process


def start_workers(
    *, url: str, key: str, engine: str, model: str, count: int, slots: int, rate: float, tokens: int, threads: int
) -> list[Process]:
    processes = []
    for i in range(count):
        name = f"bench-{engine}-{i}-{uuid.uuid4().hex[:6]}"
        args = [str(BIN / "sogni-worker"), "--platform", url, "--name", name, "--model", model]
        args += engine_args(engine, slots=slots, rate=rate, tokens=tokens, threads=threads)
        process = start_process(f"worker-{name}", args, {"SOGNI_API_KEY": key})
        process.extra["name"] = name
        processes.append(process)
    return processes


def wait_models_online(url: str, key: str, model: str, workers: list[Process], count: int) -> None:
    def online() -> bool:
        for process in workers:
            if not process.alive():
                raise RuntimeError(f"{process.name} exited:\n{process.log()[-4000:]}")
        body = httpx.get(f"{url}/v1/models/{model}", headers={"Authorization": f"Bearer {key}"}, timeout=5).json()
        return body.get("online_workers", 0) >= count

    wait_until(online, timeout=120, interval=0.25, what=f"{count} workers online for {model}")


@dataclass
class Topology:
    """Every process the bench started, stopped in reverse order."""

    processes: list[Process] = field(default_factory=list)

    def add(self, *processes: Process) -> None:
        self.processes.extend(processes)

    def remove(self, processes: list[Process]) -> None:
        for process in processes:
            process.stop(timeout=15)
            self.processes.remove(process)

    def stop(self) -> None:
        for process in reversed(self.processes):
            process.stop(timeout=15)
        self.processes.clear()


def _descendants(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            children = (task / "children").read_text().split()
        except OSError:
            continue
        for child in map(int, children):
            out += [child, *_descendants(child)]
    return out


def cpu_seconds(pids: list[int]) -> float:
    """utime + stime of these processes and their live children (threads included), from /proc."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in {p for root in pids for p in (root, *_descendants(root))}:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15 of stat)
    return total / tick


def machine() -> dict:
    cpu = ""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem_kb = next(
        int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines() if line.startswith("MemTotal")
    )
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(mem_kb / 1024 / 1024, 1),
        "kernel": os.uname().release,
        "python": sys.version.split()[0],
    }


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
