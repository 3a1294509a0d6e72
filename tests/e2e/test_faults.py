"""Faults survived with real processes: a private Redis, daphne, a Celery worker, Celery beat running
the lease reaper, and `sogni-worker` processes on the scripted engine at 5 tokens/s (deterministic
timings; no model needed).

Short leases so the tests are quick: JOB_LEASE_SECONDS=5, heartbeats every 3 s (the consumer's own
silence watchdog closes after 9 s, so a frozen worker is caught by its lease first), reaper every 1 s.
"""

import json
import signal
import threading
import time

import httpx
import openai
import pytest

from tests.e2e.charging_checks import (
    balances,
    entries_of,
    expected_usd,
    held,
    in_tokens,
    ledger_is_sound,
)
from tests.support.fixtures import LivePlatform
from tests.support.processes import (
    ARTIFACTS,
    BIN,
    Process,
    RedisServer,
    free_port,
    start_celery,
    start_daphne,
    start_process,
    wait_until,
)
from tests.support.workers import WorkerPool, worker_row

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

SCRIPTED = "qwen3.5-35b-a3b-abliterated-gguf-q4km"
HI = [{"role": "user", "content": "Hello there"}]
LEASE = 5
SLOW = ["--scripted-rate", "5", "--scripted-tokens", "200"]


def start_beat(env: dict[str, str]) -> Process:
    schedule = ARTIFACTS / f"beat-schedule-{free_port()}"
    process = start_process(
        "celery-beat",
        [str(BIN / "celery"), "-A", "sogni_platform", "beat", "--loglevel=INFO", f"--schedule={schedule}"],
        env,
    )
    wait_until(lambda: "beat: Starting" in process.log() or not process.alive(), timeout=60, what="beat started")
    if not process.alive():
        raise RuntimeError(f"celery beat exited:\n{process.log()}")
    return process


@pytest.fixture(scope="module")
def redis_server():
    server = RedisServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def fault_platform(live_env, redis_server):
    env = {
        **live_env,
        "REDIS_URL": redis_server.url,
        "JOB_LEASE_SECONDS": str(LEASE),
        "JOB_REAPER_SECONDS": "1",
        "WORKER_HEARTBEAT_SECONDS": "3",
        "JOB_QUEUE_TIMEOUT": "8",
        "HOLD_ORPHAN_GRACE_SECONDS": "5",
    }
    celery = start_celery(env, concurrency=4)
    beat = start_beat(env)
    daphne = start_daphne(env)
    platform = LivePlatform(url=daphne.extra["url"], env=env, daphne=daphne, celery=celery)
    platform.beat = beat
    yield platform
    platform.daphne.stop()  # the ones running now: a test may have restarted them
    beat.stop()
    platform.celery.stop()


@pytest.fixture
def pool(fault_platform, operator, catalog):
    workers = WorkerPool(url=fault_platform.url, operator=operator)
    yield workers
    workers.stop_all()


def scripted(pool: WorkerPool, name: str, *, wait: bool = True) -> Process:
    return pool.start(name, engine="scripted", models=[SCRIPTED], extra=SLOW, wait=wait)


def client_for(platform, user, timeout: float = 120) -> openai.OpenAI:
    return openai.OpenAI(base_url=platform.url + "/v1", api_key=user.key, max_retries=0, timeout=timeout)


def open_jobs() -> list:
    from inference.models import Job

    return list(Job.objects.filter(status__in=("queued", "assigned", "running")))


def open_holds() -> list:
    from billing.models import Hold

    return list(Hold.objects.filter(status="open"))


def sse_events(response: httpx.Response):
    """The `data:` payloads of an SSE response, decoded (the final [DONE] as the string)."""
    for line in response.iter_lines():
        if line.startswith("data: "):
            payload = line[len("data: ") :]
            yield payload if payload == "[DONE]" else json.loads(payload)


def test_a_worker_killed_after_its_first_token_ends_the_stream_with_an_error_and_bills_delivered_tokens(
    fault_platform, pool, user, operator
):
    victim = scripted(pool, "victim")
    operator_start = balances(operator.user)
    body = {"model": SCRIPTED, "messages": HI, "max_tokens": 200, "stream": True}
    headers = {"Authorization": f"Bearer {user.key}"}
    contents, errors = [], []
    with httpx.stream("POST", f"{fault_platform.url}/v1/chat/completions", json=body, headers=headers, timeout=60) as r:
        assert r.status_code == 200
        for event in sse_events(r):
            if isinstance(event, dict) and "error" in event:
                errors.append(event["error"])
            elif isinstance(event, dict) and event["choices"] and event["choices"][0]["delta"].get("content"):
                contents.append(event["choices"][0]["delta"]["content"])
                if len(contents) == 2:
                    pool.kill(victim)

    assert errors and errors[0]["code"] == "worker_disconnected", errors
    assert len(contents) >= 2
    from inference.models import Job

    job = Job.objects.get()
    assert job.status == Job.Status.FAILED
    assert 2 <= job.completion_tokens < 200
    # Billed for the delivered completion tokens only (no prompt: the worker broke off); the
    # worker earns nothing for a failed job.
    prices = client_for(fault_platform, user).models.retrieve(SCRIPTED).model_extra["pricing"]
    usd = expected_usd(prices, prompt_tokens=0, completion_tokens=job.completion_tokens)
    assert -entries_of(job)["charge"] == in_tokens(usd, "spark", paying=True) > 0
    from billing.models import Hold

    hold = Hold.objects.get(job_id=str(job.id))
    assert (hold.status, hold.completion_tokens, hold.prompt_tokens) == ("settled", job.completion_tokens, 0)
    assert "reward" not in entries_of(job)
    assert balances(operator.user) == operator_start
    assert held(user.user) == {"spark": 0, "sogni": 0}
    ledger_is_sound()


def test_a_frozen_worker_loses_its_job_to_another_worker_when_the_lease_lapses(fault_platform, pool, user, operator):
    from inference.models import Job, Worker

    frozen = scripted(pool, "frozen")
    frozen.signal(signal.SIGSTOP)
    result: dict = {}

    def ask() -> None:
        try:
            reply = client_for(fault_platform, user).chat.completions.create(model=SCRIPTED, messages=HI, max_tokens=8)
            result["reply"] = reply
        except Exception as error:  # surfaced by the assertions below
            result["error"] = error

    request = threading.Thread(target=ask)
    request.start()
    frozen_row = worker_row(owner=operator.user, name="frozen")
    wait_until(lambda: Job.objects.filter(worker=frozen_row).exists(), timeout=30, what="job sent to 'frozen'")
    scripted(pool, "rescuer")
    request.join(60)

    assert not request.is_alive(), "the request never finished"
    assert "error" not in result, result.get("error")
    assert result["reply"].choices[0].message.content
    job = Job.objects.get()
    assert (job.status, job.worker.name, job.attempts) == (Job.Status.COMPLETED, "rescuer", 2)
    # The lease reaper took it back (Celery beat's, or the waiting request's own read of its quiet job;
    # not the connection's silence watchdog, which waits 9 s), and took the silent worker out of dispatch.
    assert "lease expired" in fault_platform.celery.log() + fault_platform.daphne.log()
    frozen_row.refresh_from_db()
    assert frozen_row.status == Worker.Status.OFFLINE
    assert frozen_row.jobs_aborted >= 1
    assert not open_holds()
    ledger_is_sound()


def test_a_client_that_disconnects_gets_its_job_cancelled_on_the_worker(fault_platform, pool, user, operator):
    from inference.models import Job

    worker = scripted(pool, "cancellable")
    stream = client_for(fault_platform, user).chat.completions.create(
        model=SCRIPTED, messages=HI, max_tokens=200, stream=True
    )
    seen = 0
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            seen += 1
            if seen == 2:
                break
    stream.close()

    wait_until(lambda: Job.objects.get().status == "cancelled", timeout=15, what="job cancelled")
    wait_until(lambda: "cancel requested" in worker.log(), timeout=10, what="the worker got the cancel")
    job = Job.objects.get()
    assert 2 <= job.completion_tokens < 200
    row = worker_row(owner=operator.user, name="cancellable")
    assert row.in_flight == 0, "the worker's slot is free again"
    assert not open_holds()
    ledger_is_sound()


def supervise(platform, stop: threading.Event, restarts: list[float]) -> None:
    """What systemd's Restart=always does in production: restart the Celery worker if it exits.

    kombu (5.7) can exit the worker with "Unrecoverable error: AttributeError ... 'hostname'" when the
    broker connection drops while acks_late tasks are unacknowledged (restore_unacked on close).
    """
    while not stop.is_set():
        if not platform.celery.alive():
            restarts.append(time.monotonic())
            platform.celery = start_celery(platform.env, concurrency=4)
        time.sleep(0.1)


def test_requests_succeed_again_soon_after_redis_restarts_under_load_and_nothing_stays_open(
    fault_platform, redis_server, pool, user
):
    scripted(pool, "steady-a")
    scripted(pool, "steady-b")
    client = client_for(fault_platform, user, timeout=30)
    outcomes: list[tuple[float, float, bool]] = []  # (started, ended, succeeded)
    stop = threading.Event()
    restarts: list[float] = []
    supervisor = threading.Thread(target=supervise, args=(fault_platform, stop, restarts))
    supervisor.start()

    def load() -> None:
        while not stop.is_set():
            started = time.monotonic()
            try:
                reply = client.chat.completions.create(model=SCRIPTED, messages=HI, max_tokens=3)
                ok = bool(reply.choices[0].message.content)
            except Exception:
                ok = False
                time.sleep(0.2)
            outcomes.append((started, time.monotonic(), ok))

    threads = [threading.Thread(target=load) for _ in range(3)]
    for thread in threads:
        thread.start()
    wait_until(lambda: sum(ok for *_, ok in outcomes) >= 3, timeout=60, what="load flowing")

    redis_server.stop()
    time.sleep(2)
    redis_server.start()
    back = time.monotonic()
    try:
        wait_until(
            lambda: any(ok and started >= back for started, _, ok in outcomes),
            timeout=30,
            what="a request started after the restart succeeding",
        )
    finally:
        stop.set()
        for thread in [*threads, supervisor]:
            thread.join(60)

    first_ok = min(ended for started, ended, ok in outcomes if ok and started >= back)
    assert first_ok - back < 10, (
        f"the first request after the restart succeeded {first_ok - back:.1f} s later "
        f"(Celery worker restarts: {len(restarts)})"
    )
    # The reaper (and each request's own queue timeout) leave no job or hold open.
    wait_until(lambda: not open_jobs() and not open_holds(), timeout=60, what="no job or hold open")
    ledger_is_sound()


def fault_free(*rows) -> list[tuple[str, int, int, object]]:
    """(name, failed, aborted, paused until) of each worker row, read anew."""
    for row in rows:
        row.refresh_from_db()
    return [(row.name, row.jobs_failed, row.jobs_aborted, row.paused_until) for row in rows]


def test_celery_killed_during_jobs_blames_no_worker_and_the_jobs_complete_without_it(
    fault_platform, pool, user, operator
):
    from inference.models import Job

    rows = [worker_row(owner=operator.user, name=scripted(pool, name).extra["name"]) for name in ("calm-a", "calm-b")]
    client = client_for(fault_platform, user)
    replies: list = []

    def ask() -> None:
        replies.append(client.chat.completions.create(model=SCRIPTED, messages=HI, max_tokens=15))

    requests = [threading.Thread(target=ask) for _ in rows]
    for request in requests:
        request.start()
    wait_until(lambda: Job.objects.filter(status="running").count() == 2, timeout=30, what="both jobs running")
    fault_platform.celery.signal(signal.SIGKILL)
    fault_platform.celery.popen.wait(10)
    # The workers finish (15 tokens at 5/s): the server holding their sockets settles the jobs itself.
    for request in requests:
        request.join(30)
    assert len(replies) == 2 and all(reply.choices[0].message.content for reply in replies)
    assert [job.status for job in Job.objects.all()] == [Job.Status.COMPLETED] * 2
    time.sleep(2 * LEASE)  # the reaper stays down for two leases, then comes back
    fault_platform.celery = start_celery(fault_platform.env, concurrency=4)
    time.sleep(LEASE)
    assert fault_free(*rows) == [("calm-a", 0, 0, None), ("calm-b", 0, 0, None)]
    wait_until(lambda: not open_holds(), timeout=30, what="no hold open")
    ledger_is_sound()


def stream_counting(platform, user, received: list[int]):
    """A streaming request of 100 tokens; appends how many completion tokens it received (the scripted
    engine's tokens are words) when it ends, however it ends."""
    body = {"model": SCRIPTED, "messages": HI, "max_tokens": 100, "stream": True}
    headers = {"Authorization": f"Bearer {user.key}"}
    content: list[str] = []

    def ask() -> None:
        try:
            with httpx.stream("POST", f"{platform.url}/v1/chat/completions", json=body, headers=headers) as r:
                for event in sse_events(r):
                    if isinstance(event, dict) and event.get("choices"):
                        content.append(event["choices"][0]["delta"].get("content") or "")
        except httpx.HTTPError:
            pass  # the server died under it
        received.append(len("".join(content).split()))

    return threading.Thread(target=ask)


def assert_billed_within_a_second(received: list[int]) -> None:
    """Each cut stream's settled hold billed what its client got, within a second's worth of tokens
    (5 a second); every stream was cut mid-way (the jobs started together, so sorted counts pair up)."""
    from billing.models import Hold

    billed = sorted(Hold.objects.exclude(status="open").values_list("completion_tokens", flat=True))
    assert all(5 <= count < 100 for count in received), received
    assert all(abs(b - r) <= 5 for b, r in zip(billed, sorted(received), strict=True)), (billed, received)


@pytest.mark.parametrize("stop", [signal.SIGKILL, signal.SIGTERM], ids=["killed", "stopped"])
def test_a_server_killed_or_stopped_during_jobs_blames_no_worker(fault_platform, pool, user, operator, stop):
    from inference.models import Job

    rows = [worker_row(owner=operator.user, name=scripted(pool, name).extra["name"]) for name in ("kept-a", "kept-b")]
    received: list[int] = []
    requests = [stream_counting(fault_platform, user, received) for _ in rows]
    for request in requests:
        request.start()
    wait_until(lambda: Job.objects.filter(status="running").count() == 2, timeout=30, what="both jobs running")
    time.sleep(2)  # mid-stream
    fault_platform.daphne.signal(stop)
    fault_platform.daphne.popen.wait(10)
    # Longer than a lease: the reaper takes the jobs back while the workers cannot reach the platform.
    wait_until(lambda: not open_jobs(), timeout=30, what="the reaper ending the jobs")
    port = int(fault_platform.url.rsplit(":", 1)[1])
    fault_platform.daphne = start_daphne(fault_platform.env, port=port)
    for request in requests:
        request.join(30)
    for row in rows:
        wait_until(lambda row=row: worker_row(owner=operator.user, name=row.name).status == "online", timeout=60,
                   what=f"{row.name} back online")  # fmt: skip

    assert {job.status for job in Job.objects.all()} == {Job.Status.FAILED}
    assert fault_free(*rows) == [("kept-a", 0, 0, None), ("kept-b", 0, 0, None)]
    assert_billed_within_a_second(received)
    reply = client_for(fault_platform, user).chat.completions.create(model=SCRIPTED, messages=HI, max_tokens=3)
    assert reply.choices[0].message.content
    wait_until(lambda: not open_holds(), timeout=30, what="no hold open")
    ledger_is_sound()


def test_a_server_killed_mid_stream_and_restarted_at_once_bills_the_delivered_tokens(
    fault_platform, pool, user, operator
):
    """Restarted at once: the workers are back within seconds (each takes its row over from the
    connection it lost), and the jobs those connections streamed are settled for what was relayed, as
    last saved (by the reaper, or by the release of the lost connection's jobs, whichever is first)."""
    from inference.models import Job

    rows = [worker_row(owner=operator.user, name=scripted(pool, name).extra["name"]) for name in ("back-a", "back-b")]
    received: list[int] = []
    requests = [stream_counting(fault_platform, user, received) for _ in rows]
    for request in requests:
        request.start()
    wait_until(lambda: Job.objects.filter(status="running").count() == 2, timeout=30, what="both jobs running")
    time.sleep(2)  # mid-stream
    fault_platform.daphne.signal(signal.SIGKILL)
    fault_platform.daphne.popen.wait(10)
    port = int(fault_platform.url.rsplit(":", 1)[1])
    fault_platform.daphne = start_daphne(fault_platform.env, port=port)
    serving = time.monotonic()
    for request in requests:
        request.join(30)
    for row in rows:
        wait_until(lambda row=row: worker_row(owner=operator.user, name=row.name).channel_name != row.channel_name,
                   timeout=30, what=f"{row.name} back")  # fmt: skip
    back_after = time.monotonic() - serving
    wait_until(lambda: not open_jobs(), timeout=30, what="the lost jobs settled")

    assert back_after <= 10
    assert {job.status for job in Job.objects.all()} == {Job.Status.FAILED}
    assert fault_free(*rows) == [("back-a", 0, 0, None), ("back-b", 0, 0, None)]
    assert_billed_within_a_second(received)
    wait_until(lambda: not open_holds(), timeout=30, what="no hold open")
    ledger_is_sound()
