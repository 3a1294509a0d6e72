"""The worker process against a test-local platform peer: hello, jobs, concurrency, cancel, drain, reconnect."""

import asyncio
import json
import signal
import socket

import pytest

from sogni_worker.client import backoff_delay
from tests.worker.conftest import KEY
from tests.worker.peer import PlatformPeer, wait_for

# Starts real sogni-worker processes.
pytestmark = pytest.mark.e2e


def _connected(peer, n=1):
    return wait_for(lambda: len(peer.welcomed()) >= n and peer.welcomed()[n - 1], what=f"connection {n}")


def _ended(conn, job_id):
    return wait_for(
        lambda: next((f for f in conn.for_job(job_id) if f["type"] in ("done", "error")), None), what=f"{job_id} end"
    )


def _text(conn, job_id):
    return "".join(f.get("content", "") for f in conn.for_job(job_id) if f["type"] == "delta")


def test_hello_carries_key_models_slots_and_hardware(peer, start_worker):
    worker = start_worker(peer.url, "--slots", "3")
    conn = _connected(peer)
    hello = conn.of_type("hello")[0]
    assert conn.headers["authorization"] == f"Bearer {KEY}"
    assert hello["protocol"] == 1 and hello["worker_name"] == "test-worker"
    assert hello["models"] == ["test-model"] and hello["slots"] == 3 and hello["engine"] == "scripted"
    assert hello["version"] and hello["hardware"]["cores"] >= 1 and hello["hardware"]["cpu"]
    assert "tests and benchmarks only" in wait_for(lambda: "SCRIPTED ENGINE" in worker.log() and worker.log())
    wait_for(lambda: conn.of_type("heartbeat"), what="a heartbeat")


def test_job_streams_deltas_then_done_with_usage(peer, start_worker):
    start_worker(peer.url, "--scripted-rate", "0", "--scripted-tokens", "200")
    conn = _connected(peer)
    peer.job(conn, "job-1", "zebra says hi", max_tokens=500)
    done = _ended(conn, "job-1")
    deltas = [f for f in conn.for_job("job-1") if f["type"] == "delta"]
    assert done["type"] == "done" and done["finish_reason"] == "stop"
    assert done["usage"]["completion_tokens"] == 200 == sum(f["tokens"] for f in deltas)
    assert _text(conn, "job-1") == "zebra " + " ".join(f"tok{i}" for i in range(1, 200))
    # Tokens produced in a burst share frames instead of one frame per token.
    assert len(deltas) < 200


def test_max_tokens_cuts_with_length(peer, start_worker):
    start_worker(peer.url, "--scripted-rate", "0")
    conn = _connected(peer)
    peer.job(conn, "job-short", "alpha", max_tokens=3)
    done = _ended(conn, "job-short")
    assert done["finish_reason"] == "length" and done["usage"]["completion_tokens"] == 3
    assert _text(conn, "job-short") == "alpha tok1 tok2"


def test_concurrent_jobs_interleave_without_cross_talk(any_peer, start_worker):
    peer = any_peer
    start_worker(peer.url, "--slots", "2", "--scripted-rate", "20", "--scripted-tokens", "20")
    conn = _connected(peer)
    peer.job(conn, "job-a", "apple pie")
    peer.job(conn, "job-b", "banana split")
    wait_for(lambda: any(set(h["running"]) == {"job-a", "job-b"} for h in conn.of_type("heartbeat")),
             what="a heartbeat listing both jobs")  # fmt: skip
    end_a, end_b = _ended(conn, "job-a"), _ended(conn, "job-b")
    assert end_a["type"] == end_b["type"] == "done"
    assert _text(conn, "job-a").startswith("apple tok1") and "banana" not in _text(conn, "job-a")
    assert _text(conn, "job-b").startswith("banana tok1") and "apple" not in _text(conn, "job-b")
    # Both ran at once: b's first delta came before a finished.
    order = [(f["job_id"], f["type"]) for f in conn.frames if f.get("job_id")]
    assert order.index(("job-b", "delta")) < order.index(("job-a", "done"))


def test_frames_put_while_one_is_being_sent_go_out_next_in_order_deltas_in_one_frame():
    from sogni_worker.outbox import Outbox

    sent, release = [], asyncio.Event()

    async def send_text(text, messages):
        sent.append(json.loads(text))
        if len(sent) == 1:
            await release.wait()  # a slow socket: everything put meanwhile waits for the next turn

    async def scenario():
        outbox = Outbox(send_text)
        writer = asyncio.create_task(outbox.run())
        outbox.put({"type": "delta", "job_id": "a", "content": "1", "tokens": 1})
        await asyncio.sleep(0.01)
        for frame in ({"type": "delta", "job_id": "b", "content": "2", "tokens": 1},
                      {"type": "delta", "job_id": "a", "content": "3", "tokens": 1},
                      {"type": "done", "job_id": "a"}):  # fmt: skip
            outbox.put(frame)
        release.set()
        await asyncio.wait_for(outbox.empty.wait(), 5)
        writer.cancel()

    asyncio.run(scenario())
    assert [f["type"] for f in sent] == ["delta", "deltas", "done"]
    assert [(d["job_id"], d["content"]) for d in sent[1]["deltas"]] == [("b", "2"), ("a", "3")]


def test_a_job_beyond_the_slots_is_refused_as_overloaded(peer, start_worker):
    start_worker(peer.url, "--slots", "1", "--scripted-rate", "10", "--scripted-tokens", "50")
    conn = _connected(peer)
    peer.job(conn, "job-1", "one")
    wait_for(lambda: conn.for_job("job-1"), what="job-1 started")
    peer.job(conn, "job-2", "two")
    refusal = _ended(conn, "job-2")
    assert refusal["type"] == "error" and refusal["code"] == "overloaded" and refusal["retryable"] is True


def test_cancel_stops_the_job_early(peer, start_worker):
    start_worker(peer.url, "--scripted-rate", "20", "--scripted-tokens", "400")
    conn = _connected(peer)
    peer.job(conn, "job-c", "cancel me", max_tokens=400)
    wait_for(lambda: [f for f in conn.for_job("job-c") if f["type"] == "delta"], what="first delta")
    peer.send(conn, {"type": "cancel", "job_id": "job-c"})
    end = _ended(conn, "job-c")
    assert end["type"] == "error" and end["code"] == "cancelled"
    sent = sum(f["tokens"] for f in conn.for_job("job-c") if f["type"] == "delta")
    assert sent < 400
    assert not [f for f in conn.for_job("job-c") if conn.frames.index(f) > conn.frames.index(end)]


def test_tool_call_fragments_reassemble(peer, start_worker):
    start_worker(peer.url, "--scripted-rate", "0")
    conn = _connected(peer)
    tool = {"type": "function", "function": {"name": "get_weather", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}  # fmt: skip
    peer.job(conn, "job-t", "Paris weather", tools=[tool], tool_choice="required")
    done = _ended(conn, "job-t")
    fragments = [t for f in conn.for_job("job-t") if f["type"] == "delta" for t in f.get("tool_calls", [])]
    assert done["finish_reason"] == "tool_calls"
    assert fragments[0]["id"] and fragments[0]["name"] == "get_weather"
    assert "".join(t.get("arguments", "") for t in fragments) == '{"city": "Paris"}'


def test_sigterm_drains_running_jobs_then_exits_zero(any_peer, start_worker):
    peer = any_peer
    worker = start_worker(peer.url, "--scripted-rate", "20", "--scripted-tokens", "30")
    conn = _connected(peer)
    peer.job(conn, "job-d", "drain test")
    wait_for(lambda: conn.for_job("job-d"), what="job started")
    worker.signal(signal.SIGTERM)
    wait_for(lambda: conn.of_type("draining"), what="draining frame")
    peer.job(conn, "job-late", "too late")
    late = _ended(conn, "job-late")
    assert late["type"] == "error" and late["code"] == "overloaded" and late["retryable"] is True
    assert _ended(conn, "job-d")["type"] == "done"
    assert worker.popen.wait(20) == 0
    wait_for(lambda: conn.ws.close_code == 1000, what="the worker's 1000 close")
    assert len(peer.connections) == 1


@pytest.mark.parametrize(
    ("code", "says"), [(4001, "refused the API key"), (4002, "protocol version"), (4008, "banned or paused")]
)
def test_refusal_close_codes_exit_nonzero_without_retry(start_worker, code, says):
    peer = PlatformPeer(reject_with=code)
    try:
        worker = start_worker(peer.url)
        assert worker.popen.wait(20) == 1
        assert says in worker.log() and "not reconnecting" in worker.log()
        assert len(peer.connections) == 1
    finally:
        peer.stop()


def test_reconnects_with_growing_backoff_after_drops(start_worker):
    peer = PlatformPeer(reject_with=4003)  # protocol violation: reconnect with backoff
    try:
        worker = start_worker(peer.url)
        wait_for(lambda: len(peer.connections) >= 4, timeout=30, what="three reconnects")
        opened = [c.opened_at for c in peer.connections]
        # 1 s, 2 s, 4 s, each with at most 50% jitter below; each wait starts after the last connect.
        for attempt in range(3):
            assert opened[attempt + 1] - opened[attempt] >= 0.5 * 2**attempt
        assert worker.alive()
    finally:
        peer.stop()


def test_after_a_healthy_connection_retries_stay_within_7_5s(peer, start_worker):
    start_worker(peer.url)
    first = _connected(peer)
    peer.reject_with = 1012  # restarting: from now on every attempt is turned away
    peer.close(first, 1012, "restarting")
    wait_for(lambda: len(peer.connections) >= 7, timeout=60, what="six retries")
    opened = [c.opened_at for c in peer.connections[1:7]]
    # Uncapped, the fourth and fifth waits would be 4-12 s and 8-24 s.
    assert all(later - earlier <= 7.5 + 0.5 for earlier, later in zip(opened, opened[1:], strict=False))


def test_reconnects_after_a_drop_and_serves_again(peer, start_worker):
    start_worker(peer.url, "--scripted-rate", "0")
    first = _connected(peer)
    peer.close(first, 1012, "restarting")
    second = _connected(peer, 2)
    peer.job(second, "job-r", "again")
    assert _ended(second, "job-r")["type"] == "done"
    # Coming back, it names the worker id it was given, so the platform hands its row back at once.
    assert "worker_id" not in first.of_type("hello")[0]
    assert second.of_type("hello")[0]["worker_id"] == "w1"


def test_default_worker_serves_smollm2_with_llama_cpp(peer, start_worker):
    worker = start_worker(peer.url, "--n-ctx", "1024", scripted=False)
    conn = wait_for(lambda: len(peer.welcomed()) >= 1 and peer.welcomed()[0], timeout=60, what="llama worker hello")
    hello = conn.of_type("hello")[0]
    assert hello["engine"] == "llama-cpp" and hello["models"] == ["smollm2-135m-instruct-q4_1"]
    assert "SCRIPTED" not in worker.log()
    peer.job(conn, "job-llm", "Say hello.", max_tokens=4, temperature=0)
    done = wait_for(lambda: next((f for f in conn.for_job("job-llm") if f["type"] != "delta"), None), timeout=120)
    deltas = [f for f in conn.for_job("job-llm") if f["type"] == "delta"]
    assert done["type"] == "done", done
    assert any(c.isalpha() for c in _text(conn, "job-llm"))
    assert done["usage"]["completion_tokens"] == sum(f["tokens"] for f in deltas) <= 4
    assert done["usage"]["prompt_tokens"] > 0


def test_sigterm_while_the_handshake_hangs_exits_zero_at_once(start_worker):
    # A listener that never answers the WebSocket handshake (the platform is wedged).
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        worker = start_worker(f"ws://127.0.0.1:{listener.getsockname()[1]}")
        wait_for(lambda: "connecting to" in worker.log(), what="worker connecting")
        worker.signal(signal.SIGTERM)
        # The handshake alone would wait 15 s before giving up.
        assert worker.popen.wait(10) == 0


def test_sigterm_while_waiting_to_reconnect_exits_zero(start_worker):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # nothing listens here: connection refused
    worker = start_worker(f"ws://127.0.0.1:{port}")
    wait_for(lambda: "reconnecting in" in worker.log(), what="worker backing off")
    worker.signal(signal.SIGTERM)
    assert worker.popen.wait(10) == 0


def test_a_platform_that_knows_none_of_the_models_stops_the_worker(start_worker):
    peer = PlatformPeer(known_models=["some-other-model"])
    try:
        worker = start_worker(peer.url)
        assert worker.popen.wait(20) == 1
        assert "accepted none of the models" in worker.log()
        assert len(peer.connections) == 1
    finally:
        peer.stop()


def test_backoff_doubles_from_1s_to_30s_with_half_jitter():
    for attempt, base in [(0, 1), (1, 2), (2, 4), (4, 16), (5, 30), (12, 30)]:
        delays = [backoff_delay(attempt) for _ in range(200)]
        assert all(0.5 * base <= d <= 1.5 * base for d in delays)
        assert max(delays) - min(delays) > 0.5 * base  # jittered, so reconnecting workers spread out
    assert all(2.5 <= backoff_delay(12, cap=5) <= 7.5 for _ in range(200))


def test_environment_variables_configure_the_worker(peer, start_worker):
    env = {"SOGNI_ENGINE": "scripted", "SOGNI_MODELS": "model-a,model-b", "SOGNI_SLOTS": "5"}
    start_worker(peer.url.replace("ws://", "http://"), scripted=False, env=env)
    hello = _connected(peer).of_type("hello")[0]
    assert (hello["engine"], hello["models"], hello["slots"]) == ("scripted", ["model-a", "model-b"], 5)


def test_runs_of_deltas_join_up_to_the_frame_budget_and_other_frames_keep_their_place():
    from sogni_worker.outbox import MAX_BATCH_CHARS, MAX_BATCHED, batches, dumps

    def delta(job, text):
        return True, dumps({"type": "delta", "job_id": job, "content": text, "tokens": 1})

    done = (False, dumps({"type": "done", "job_id": "a"}))
    frames = [delta("a", "x"), delta("b", "y"), done, delta("b", "z")]
    sent = [json.loads(batch.text) for batch in batches(frames)]
    assert [f["type"] for f in sent] == ["deltas", "done", "delta"]
    assert [(d["job_id"], d["content"]) for d in sent[0]["deltas"]] == [("a", "x"), ("b", "y")]

    many = [delta(str(i), "t") for i in range(MAX_BATCHED + 1)]
    assert [batch.messages for batch in batches(many)] == [MAX_BATCHED, 1]
    big = [delta("a", "x" * (MAX_BATCH_CHARS - 100)), delta("b", "y" * 200)]
    assert [json.loads(batch.text)["type"] for batch in batches(big)] == ["delta", "delta"]


def test_a_jobs_deltas_waiting_together_go_out_as_one_and_count_as_one_message():
    """The platform counts each delta of a `deltas` frame against its rate limit: a busy worker joins a
    job's waiting deltas instead of sending more of them."""
    from sogni_worker.outbox import batches, dumps

    def delta(job, **fields):
        return True, dumps({"type": "delta", "job_id": job, **fields})

    frames = [
        delta("a", content="Hel", tokens=1),
        delta("b", content="Good", tokens=1),
        delta("a", content="lo", tokens=2),
        delta("b", tool_calls=[{"index": 0, "name": "f"}], tokens=1),
        delta("b", content="bye", tokens=1),
        delta("a", reasoning="after", tokens=1),
        delta("a", reasoning=" all", tokens=1),
    ]
    (batch,) = batches(frames)
    sent = json.loads(batch.text)["deltas"]
    assert batch.messages == len(sent) == 5
    assert sent[0] == {"type": "delta", "job_id": "a", "content": "Hello", "tokens": 3}
    # A tool call keeps its place: what follows it is not joined to what came before it; nor is reasoning
    # that came after content.
    assert [(d["job_id"], d.get("content"), d.get("reasoning"), d.get("tool_calls")) for d in sent[1:]] == [
        ("b", "Good", None, None),
        ("b", None, None, [{"index": 0, "name": "f"}]),
        ("b", "bye", None, None),
        ("a", None, "after all", None),
    ]


def test_messages_are_paced_within_the_platforms_budget_counting_each_delta():
    from inference.protocol import RateLimiter
    from sogni_worker.client import Worker, WorkerConfig

    class Socket:
        def __init__(self):
            self.sent: list[float] = []

        async def send(self, text):
            self.sent.append(asyncio.get_running_loop().time())

    async def scenario():
        worker = Worker(WorkerConfig(platform="http://x", api_key=KEY, name="w", models=["m"], slots=1), engine=None)
        socket = Socket()
        for _ in range(20):  # two seconds' worth of deltas, 180 a frame
            await worker._send_text(socket, "{}", 180)
        return socket.sent

    sent = asyncio.run(scenario())
    assert sent[-1] - sent[0] >= 0.95  # one second's worth goes at once; the rest waits its turn
    # The platform's own limiter (its default budget) lets every frame through.
    platform = RateLimiter(2000, now=sent[0])
    assert all(platform.allow(at, cost=180) for at in sent)


def test_hello_announces_the_engines_features_and_prompt_jobs_run(peer, start_worker):
    start_worker(peer.url, "--scripted-rate", "0")
    conn = _connected(peer)
    assert sorted(conn.of_type("hello")[0]["features"]) == ["logprobs", "prompt"]
    request = {"prompt": "walrus wrote this", "max_tokens": 3, "stream": True, "logprobs": True, "top_logprobs": 2}
    peer.send(conn, {"type": "job", "job_id": "job-raw", "model": "test-model", "request": request})
    done = _ended(conn, "job-raw")
    assert done["type"] == "done" and done["usage"]["completion_tokens"] == 3
    assert _text(conn, "job-raw") == "walrus tok1 tok2"
    entries = [e for f in conn.for_job("job-raw") if f["type"] == "delta" for e in f.get("logprobs", [])]
    assert [e["token"] for e in entries] == ["walrus", " tok1", " tok2"]
    assert all(len(e["top_logprobs"]) == 2 and e["bytes"] == list(e["token"].encode()) for e in entries)
