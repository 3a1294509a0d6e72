"""Worker operators and real `sogni-worker` processes for end-to-end tests.

Use with `transactional_db` and `live_platform`: the operator's account must be committed for the
platform (a separate daphne process) to accept its key, and the test reads the worker registry the
platform writes.
"""

import signal
from dataclasses import dataclass, field

import pytest

from tests.support.factories import SMOLLM2, Account, account_create
from tests.support.processes import BIN, Process, start_process, wait_until

# Invalid: the right shape, a lookup id no account has.
BOGUS_KEY = "sk-sogni-AAAAAAAAAAAA-" + "b" * 40


def worker_args(*, url: str, name: str, engine: str, models: list[str], slots: int, extra: list[str]) -> list[str]:
    args = [str(BIN / "sogni-worker"), "--platform", url, "--name", name, "--engine", engine, "--slots", str(slots)]
    for model in models:
        args += ["--model", model]
    if engine == "llama-cpp":
        # Two cores on the test machine: a small context and one thread per worker.
        args += ["--n-ctx", "1024", "--threads", "1"]
    return args + extra


def start_worker(
    *,
    url: str,
    key: str,
    name: str,
    engine: str = "llama-cpp",
    models: list[str] | None = None,
    slots: int = 1,
    extra: list[str] | None = None,
) -> Process:
    args = worker_args(url=url, name=name, engine=engine, models=models or [SMOLLM2], slots=slots, extra=extra or [])
    process = start_process(f"worker-{name}", args, {"SOGNI_API_KEY": key})
    process.extra["name"] = name
    return process


def worker_row(*, owner, name: str):
    from inference.models import Worker

    return Worker.objects.filter(owner=owner, name=name).order_by("-pk").first()


def worker_online(*, owner, name: str) -> bool:
    row = worker_row(owner=owner, name=name)
    return row is not None and row.status == "online"


def wait_worker_online(process: Process, *, owner, timeout: float = 90) -> object:
    """Until the platform's registry lists the worker online; fails at once if the process died."""
    name = process.extra["name"]

    def online() -> bool:
        if not process.alive():
            raise RuntimeError(f"worker {name} exited with {process.popen.returncode}:\n{process.log()}")
        return worker_online(owner=owner, name=name)

    wait_until(online, timeout=timeout, interval=0.2, what=f"worker {name} online")
    return worker_row(owner=owner, name=name)


def wait_worker_gone(*, owner, name: str, timeout: float = 30) -> None:
    wait_until(lambda: not worker_online(owner=owner, name=name), timeout=timeout, interval=0.2, what=f"{name} offline")


@dataclass
class WorkerPool:
    """Starts workers for one operator and stops every one of them at teardown."""

    url: str
    operator: Account
    processes: list[Process] = field(default_factory=list)

    def start(self, name: str, *, wait: bool = True, key: str | None = None, **kwargs) -> Process:
        process = start_worker(url=self.url, key=key or self.operator.key, name=name, **kwargs)
        self.processes.append(process)
        if wait:
            wait_worker_online(process, owner=self.operator.user)
        return process

    def kill(self, process: Process) -> None:
        process.signal(signal.SIGKILL)
        process.popen.wait(10)

    def stop_all(self) -> None:
        for process in self.processes:
            if process.alive():
                process.popen.send_signal(signal.SIGCONT)  # a stopped process cannot act on SIGTERM
            process.stop(timeout=20)


@pytest.fixture
def catalog(transactional_db) -> None:
    """Transactional tests flush tables, seeded catalog rows included."""
    from inference.catalog import catalog_seed

    catalog_seed()


@pytest.fixture
def operator(transactional_db) -> Account:
    return account_create(email="operator@example.com")


@pytest.fixture
def workers(live_platform, operator, catalog) -> WorkerPool:
    pool = WorkerPool(url=live_platform.url, operator=operator)
    yield pool
    pool.stop_all()
