"""The worker network end to end: real daphne, a Celery worker, PostgreSQL, Redis and `sogni-worker`
processes running the llama-cpp engine on SmolLM2, driven with the official `openai` SDK."""

import json
import signal
import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import openai
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from tests.support.factories import SMOLLM2, account_create
from tests.support.processes import wait_until
from tests.support.workers import BOGUS_KEY, wait_worker_gone, worker_row

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

PROMPT = [{"role": "user", "content": "Say hello"}]


@pytest.fixture
def user(transactional_db, catalog):
    return account_create(email="user@example.com")


@pytest.fixture
def client(live_platform, user) -> openai.OpenAI:
    return openai.OpenAI(base_url=live_platform.url + "/v1", api_key=user.key, max_retries=0, timeout=180)


def finished_jobs():
    from inference.models import Job

    return list(Job.objects.select_related("worker").filter(status=Job.Status.COMPLETED).order_by("created_at"))


def test_sdk_gets_a_streamed_and_a_non_streamed_completion_with_real_text(workers, client):
    workers.start("smol-1")

    reply = client.chat.completions.create(model=SMOLLM2, messages=PROMPT, max_tokens=16)
    text = reply.choices[0].message.content
    assert text and text.strip(), reply
    assert reply.model == SMOLLM2
    assert reply.choices[0].finish_reason in ("stop", "length")
    assert 0 < reply.usage.completion_tokens <= 16

    # A prompt whose answer outlasts max_tokens, so the stream has many tokens to carry.
    counting = [{"role": "user", "content": "Count from 1 to 20, separated by commas."}]
    stream = client.chat.completions.create(model=SMOLLM2, messages=counting, max_tokens=16, stream=True)
    pieces = [chunk.choices[0].delta.content for chunk in stream if chunk.choices and chunk.choices[0].delta.content]
    streamed = "".join(pieces)
    assert streamed.strip(), pieces
    assert len(pieces) > 1, "the tokens should arrive as they are generated, not in one piece"

    jobs = finished_jobs()
    assert len(jobs) == 2
    assert {job.worker.name for job in jobs} == {"smol-1"}
    assert {job.worker.engine for job in jobs} == {"llama-cpp"}


def test_concurrent_jobs_spread_over_two_workers(workers, client):
    workers.start("smol-a")
    workers.start("smol-b")

    def ask(n: int) -> str:
        messages = [{"role": "user", "content": f"Count from {n} to {n + 9}."}]
        return (
            client.chat.completions.create(model=SMOLLM2, messages=messages, max_tokens=24).choices[0].message.content
        )

    with ThreadPoolExecutor(4) as pool:
        replies = list(pool.map(ask, range(4)))

    assert all(reply and reply.strip() for reply in replies), replies
    jobs = finished_jobs()
    assert len(jobs) == 4
    assert {job.worker.name for job in jobs} == {"smol-a", "smol-b"}


def test_job_held_by_a_killed_worker_before_its_first_token_completes_on_another(workers, client, operator):
    from inference.models import Job

    doomed = workers.start("doomed")
    # Frozen, it cannot answer the job it is about to be given: the job is held and has no token yet.
    doomed.signal(signal.SIGSTOP)
    result: dict = {}

    def ask() -> None:
        try:
            result["reply"] = client.chat.completions.create(model=SMOLLM2, messages=PROMPT, max_tokens=16)
        except Exception as error:  # surfaced by the assertions below
            result["error"] = error

    request = threading.Thread(target=ask)
    request.start()
    doomed_row = worker_row(owner=operator.user, name="doomed")
    wait_until(lambda: Job.objects.filter(worker=doomed_row).exists(), timeout=30, what="the job held by 'doomed'")
    job = Job.objects.get(worker=doomed_row)

    workers.kill(doomed)
    workers.start("rescuer")
    request.join(240)

    assert not request.is_alive(), "the request never finished"
    assert "error" not in result, result.get("error")
    text = result["reply"].choices[0].message.content
    assert text and text.strip()
    job.refresh_from_db()
    assert job.status == Job.Status.COMPLETED
    assert job.worker.name == "rescuer"
    assert job.attempts == 2, "sent to 'doomed', then re-dispatched to 'rescuer'"
    assert result["reply"].id == job.public_id
    assert Job.objects.count() == 1, "the same job was re-dispatched, not a new one made"


def test_a_restarted_worker_registers_again_and_takes_jobs(workers, client, operator):
    first = workers.start("phoenix")
    assert client.chat.completions.create(model=SMOLLM2, messages=PROMPT, max_tokens=8).choices[0].message.content
    connected_at = worker_row(owner=operator.user, name="phoenix").connected_at

    first.stop(timeout=60)
    assert first.popen.returncode == 0, first.log()
    wait_worker_gone(owner=operator.user, name="phoenix")
    workers.start("phoenix")
    reply = client.chat.completions.create(model=SMOLLM2, messages=PROMPT, max_tokens=8)

    assert reply.choices[0].message.content
    row = worker_row(owner=operator.user, name="phoenix")
    assert row.status == "online" and row.connected_at > connected_at
    jobs = finished_jobs()
    assert len(jobs) == 2
    assert [job.worker_id for job in jobs] == [row.pk, row.pk]


@pytest.mark.parametrize("problem", ["bogus", "disabled"])
def test_a_worker_with_a_bad_or_disabled_key_cannot_register(workers, operator, live_platform, problem):
    from accounts.services import api_key_disable

    key = BOGUS_KEY
    if problem == "disabled":
        api_key_disable(api_key=operator.user.api_key, actor=None, reason="test")
        key = operator.key

    socket_url = live_platform.url.replace("http://", "ws://") + "/ws/worker/"
    with connect(socket_url, additional_headers={"Authorization": f"Bearer {key}"}, open_timeout=10) as socket:
        with pytest.raises(ConnectionClosed) as closed:
            socket.recv(timeout=10)
    assert closed.value.rcvd.code == 4001

    process = workers.start("refused", wait=False, key=key, engine="scripted")
    process.popen.wait(60)
    assert process.popen.returncode != 0, process.log()
    assert worker_row(owner=operator.user, name="refused") is None
    # The platform stays fine for everyone else.
    assert httpx.get(live_platform.url + "/healthz", timeout=5).status_code == 200


def test_a_worker_that_hangs_up_right_after_done_still_delivers_a_complete_charged_reply(
    live_platform, operator, client
):
    """The socket hands a worker's `done` to Celery, which settles the job and ends the stream (that
    path end to end); a worker closing its connection at once must not turn the finished reply into a
    failure (tests/inference/test_reaping.py pins the disconnect's side of that race)."""
    from billing.models import Hold
    from inference.counting import model_counter
    from inference.models import Job, LlmModel

    socket_url = live_platform.url.replace("http://", "ws://") + "/ws/worker/"
    hello = {"type": "hello", "protocol": 1, "worker_name": "hangs-up", "models": [SMOLLM2], "slots": 1}
    with ThreadPoolExecutor(1) as pool:
        with connect(socket_url, additional_headers={"Authorization": f"Bearer {operator.key}"}) as socket:
            socket.send(json.dumps(hello))
            assert json.loads(socket.recv(timeout=10))["type"] == "welcome"
            reply = pool.submit(client.chat.completions.create, model=SMOLLM2, messages=PROMPT, max_tokens=8)
            frame = json.loads(socket.recv(timeout=30))
            while frame["type"] != "job":
                frame = json.loads(socket.recv(timeout=30))
            job_id = frame["job_id"]
            socket.send(json.dumps({"type": "delta", "job_id": job_id, "content": "Hi there", "tokens": 2}))
            usage = {"prompt_tokens": 5, "completion_tokens": 2}
            socket.send(json.dumps({"type": "done", "job_id": job_id, "finish_reason": "stop", "usage": usage}))
        completion = reply.result(timeout=30)

    assert completion.choices[0].message.content == "Hi there"
    assert completion.choices[0].finish_reason == "stop"
    job = Job.objects.get(id=job_id)
    assert job.status == Job.Status.COMPLETED
    # Billed on the platform's counts (the prompt as SmolLM2's template renders it, the text relayed), not the claims.
    counter = model_counter(LlmModel.objects.get(id=SMOLLM2))
    usage = (completion.usage.prompt_tokens, completion.usage.completion_tokens)
    assert usage == (counter.prompt(job.request), counter.count("Hi there")) != (5, 2)
    hold = Hold.objects.get(job_id=job_id)
    assert hold.status == Hold.Status.SETTLED and hold.charged > 0
