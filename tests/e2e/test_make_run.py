"""`make run`'s embedded mode end to end: `manage.py runlocal` with none of the platform's environment
(no DATABASE_URL, no REDIS_URL, no secrets), a fresh data folder, then the README's quick test."""

import os
import re
import signal
import subprocess
import sys
import uuid

import httpx
import pytest

from tests.support.factories import SMOLLM2
from tests.support.processes import ARTIFACTS, ROOT, Process, free_port, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

READY = "Sogni platform running at"


def clean_env(data_dir) -> dict[str, str]:
    """What a fresh shell on a new machine has: none of our variables."""
    env = {name: os.environ[name] for name in ("PATH", "HOME", "LANG", "TMPDIR") if name in os.environ}
    return {**env, "SOGNI_DATA_DIR": str(data_dir), "PYTHONUNBUFFERED": "1"}


def manage(*args: str) -> list[str]:
    return [sys.executable, str(ROOT / "manage.py"), *args]


def children_of(pid: int) -> list[int]:
    try:
        return [int(child) for child in open(f"/proc/{pid}/task/{pid}/children").read().split()]
    except FileNotFoundError:
        return []


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def _runlocal(tmp_path, *args: str):
    env = clean_env(tmp_path / "data")
    port = free_port()
    ARTIFACTS.mkdir(exist_ok=True)
    log_path = ARTIFACTS / f"runlocal-{uuid.uuid4().hex[:8]}.log"
    popen = subprocess.Popen(
        manage("runlocal", "--port", str(port), *args),
        cwd=ROOT,
        env=env,
        stdout=log_path.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    process = Process(name="runlocal", popen=popen, log_path=log_path, extra={"env": env, "port": port})
    yield process
    if process.alive():
        process.popen.kill()
        process.popen.wait(10)


@pytest.fixture
def runlocal(tmp_path):
    yield from _runlocal(tmp_path)


@pytest.fixture
def runlocal_no_worker(tmp_path):
    yield from _runlocal(tmp_path, "--no-worker")


def wait_ready(runlocal: Process) -> None:
    def ready() -> bool:
        if not runlocal.alive():
            raise RuntimeError(f"runlocal exited with {runlocal.popen.returncode}:\n{runlocal.log()}")
        return READY in runlocal.log()

    wait_until(ready, timeout=300, interval=0.5, what="runlocal ready")


def test_runlocal_serves_the_quick_test_with_its_local_worker_and_stops_cleanly(runlocal, tmp_path):
    env, url = runlocal.extra["env"], f"http://127.0.0.1:{runlocal.extra['port']}"
    wait_ready(runlocal)
    assert (tmp_path / "data" / "db.sqlite3").exists(), "the embedded mode keeps its database in SOGNI_DATA_DIR"

    issued = subprocess.run(
        manage("issue_api_key", "you@example.com"), env=env, cwd=ROOT, capture_output=True, text=True
    )
    assert issued.returncode == 0, issued.stderr
    key = issued.stdout.strip()
    assert key.startswith("sk-sogni-")

    # The README's quick test (bounded by max_tokens: two CPU cores).
    body = {"model": SMOLLM2, "messages": [{"role": "user", "content": "Say hello"}], "max_tokens": 32}
    # Twice: the second one's wallet has fractional amounts, which SQLite hands back as floats.
    for _ in range(2):
        response = httpx.post(
            f"{url}/v1/chat/completions", headers={"Authorization": f"Bearer {key}"}, json=body, timeout=240
        )
        assert response.status_code == 200, response.text
        reply = response.json()
        assert reply["model"] == SMOLLM2
        content = reply["choices"][0]["message"]["content"]
        assert content and content.strip(), reply
        assert reply["usage"]["completion_tokens"] > 0

    children = children_of(runlocal.popen.pid)
    assert len(children) == 2, f"daphne and the local worker, got {children}"
    runlocal.popen.send_signal(signal.SIGINT)  # Ctrl-C
    runlocal.popen.wait(120)
    assert runlocal.popen.returncode == 0, runlocal.log()
    wait_until(lambda: all(gone(pid) for pid in children), timeout=10, what="runlocal's children gone")


def test_a_signup_finds_its_verification_link_where_runlocal_says_and_it_credits_the_grant(runlocal_no_worker):
    url = f"http://127.0.0.1:{runlocal_no_worker.extra['port']}"
    wait_ready(runlocal_no_worker)
    assert f"Sign up at {url}/signup/. Emails (the verification link) are printed here." in runlocal_no_worker.log()

    with httpx.Client(base_url=url, timeout=30) as browser:
        browser.get("/signup/")
        form = {"email": "visitor@example.com", "password1": "correct horse battery staple"}
        form |= {"password2": form["password1"], "csrfmiddlewaretoken": browser.cookies["csrftoken"]}
        assert browser.post("/signup/", data=form).headers["location"] == "/dashboard/"
        dashboard = browser.get("/dashboard/").text
        assert "Your 100 Spark starter grant awaits verification" in dashboard
        assert re.search(r'data-token-type="spark">\s*<th[^>]*>Spark</th>\s*<td class="available">0<', dashboard)

        links = re.compile(re.escape(url) + r"/verify-email/[^/\s]+/")
        wait_until(lambda: links.search(runlocal_no_worker.log()), timeout=10, what="the email on the console")
        for _ in range(2):  # the second opening credits nothing more
            assert "Email address verified" in browser.get(links.search(runlocal_no_worker.log()).group()).text
        dashboard = browser.get("/dashboard/").text
        assert "awaits verification" not in dashboard
        assert re.search(r'data-token-type="spark">\s*<th[^>]*>Spark</th>\s*<td class="available">100<', dashboard)
        assert dashboard.count("Starter grant") == 1
