import sys

import pytest

from tests.support.processes import Process, start_process
from tests.worker.peer import PlatformPeer

WORKER = [sys.executable, "-m", "sogni_worker.cli"]
KEY = "sk-sogni-test-worker-key"


@pytest.fixture
def peer():
    platform = PlatformPeer()
    yield platform
    platform.stop()


@pytest.fixture(params=[(), ("deltas",)], ids=["v1-frames", "deltas-feature"])
def any_peer(request):
    """A peer without and with the `deltas` feature: the worker's frames mean the same either way."""
    platform = PlatformPeer(features=request.param)
    yield platform
    platform.stop()


@pytest.fixture
def start_worker():
    """Start `sogni-worker` (scripted engine unless told otherwise) as a real process."""
    started: list[Process] = []

    def start(platform_url: str, *args: str, env: dict[str, str] | None = None, scripted: bool = True) -> Process:
        argv = [*WORKER, "--platform", platform_url, "--name", "test-worker", *args]
        if scripted:
            argv += ["--engine", "scripted", "--models", "test-model"]
        process = start_process("sogni-worker", argv, {"SOGNI_API_KEY": KEY, "PYTHONUNBUFFERED": "1", **(env or {})})
        started.append(process)
        return process

    yield start
    for process in started:
        process.popen.kill()
        process.popen.wait(10)
