"""The scenarios of `make chaos`, each a fault injected under 16 concurrent streams (Stripe: concurrent
webhook events), measured from the client's side and in the database, with the acceptance checks."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from threading import Barrier

import httpx
import stripe
from django.utils import timezone

from bench.load import Target
from chaos import measures
from chaos.topology import MODEL, Platform
from chaos.traffic import Traffic
from tests.support.processes import RedisServer, wait_until

RATE = 20.0  # scripted tokens/s of every worker
SHORT = 40  # tokens per reply: 2 s streams
LONG = 200  # the server-kill scenario"s replies: 10 s streams
FAULT_S = 5.0
HOLD_WAIT_S = 60.0  # beyond HOLD_ORPHAN_GRACE_SECONDS (chaos.run sets it to 20 s) and a reaper pass


@dataclass
class Outcome:
    scenario: str
    requests: int = 0
    failed: int = 0
    longest_stall_s: float | None = None
    recover_s: float | None = None
    never_ended: int = 0
    holds_open: int = 0
    double_charges: int = 0
    workers_faulted: int = 0
    ledger_violations: int = 0
    extra: dict = field(default_factory=dict)
    checks: list[dict] = field(default_factory=list)

    def check(self, name: str, measured, target: str, met: bool) -> None:
        self.checks.append({"check": name, "measured": measured, "target": target, "met": bool(met)})

    def as_dict(self) -> dict:
        return asdict(self)


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def _load(
    platform: Platform, name: str, fault, *, max_tokens: int = SHORT, warmup_s: float = 4.0, after_s: float = 6.0
) -> tuple[Outcome, Traffic]:
    """Run the fault under load; the outcome's common columns (not yet the ledger check)."""
    names = [process.extra["name"] for process in platform.workers]
    since = timezone.now()
    before = measures.workers_snapshot(names=names)
    target = Target("platform", [platform.url], MODEL, platform.keys["client_key"])
    traffic = Traffic(target, max_tokens=max_tokens)
    asyncio.run(traffic.run(fault, warmup_s=warmup_s, after_s=after_s))
    streams = traffic.streams
    probes = traffic.probes
    out = Outcome(
        scenario=name,
        requests=len(streams) + len(probes),
        failed=sum(not s.result.ok and not s.never_ended for s in streams) + sum(not p.ok for p in probes),
        longest_stall_s=_round(max((s.stall for s in streams), default=None)),
        never_ended=sum(s.never_ended for s in streams),
    )
    recoveries = [traffic.recovered_after(end) for _, end in traffic.faults]
    out.recover_s = None if None in recoveries else _round(max(recoveries, default=0.0))
    last_end = traffic.faults[-1][1] if traffic.faults else 0.0
    out.extra["recover_each_s"] = [_round(value) for value in recoveries]
    out.extra["never_ended_sent_s"] = [_round(s.started - last_end) for s in streams if s.never_ended]
    out.holds_open = measures.holds_wait_closed(since=since, timeout=HOLD_WAIT_S)
    out.double_charges = measures.double_charges(since=since)
    faulted = measures.workers_faulted(before=before, names=names)
    out.workers_faulted = len(faulted)
    tails = [s.tail for s in streams if s.tail is not None]
    out.extra.update(
        jobs_failed=measures.jobs_failed(since=since),
        done_to_end_max_s=_round(max(tails, default=None)),
        errors=sorted({(s.result.error or "")[:120] for s in streams if s.result.error}),
        probes_failed=sum(not p.ok for p in probes),
        faults_s=[_round(end - start) for start, end in traffic.faults],
        workers_faulted=faulted,
    )
    return out, traffic


def _ledger(out: Outcome) -> Outcome:
    violations = measures.ledger_violations()
    out.ledger_violations = len(violations)
    out.extra["ledger"] = violations[:5]
    out.check("ledger invariant violations", len(violations), "0", not violations)
    return out


def redis_killed(platform: Platform, redis: RedisServer) -> Outcome:
    log_from = len(platform.runlocal.log())

    async def fault(traffic: Traffic) -> None:
        for _ in range(3):
            traffic.fault_begin()
            await asyncio.to_thread(redis.kill)
            await asyncio.sleep(FAULT_S)
            await asyncio.to_thread(redis.start)
            traffic.fault_end()
            await asyncio.sleep(12)

    out, traffic = _load(platform, "Redis killed 5 s, 3 times", fault)
    log = platform.runlocal.log()[log_from:]
    dead = [kind for kind in ("worker", "beat") if platform.celery(kind) is None]
    out.extra["celery_exits"] = log.count("exited with code")
    out.extra["celery_left_dead"] = dead
    out.check("streams that never ended", out.never_ended, "0", out.never_ended == 0)
    out.check("Celery processes left dead", len(dead), "0", not dead)
    out.check(
        "new requests succeed after Redis is back (s)",
        out.recover_s,
        "<= 5",
        out.recover_s is not None and out.recover_s <= 5,
    )
    out.check("holds open after the orphan grace", out.holds_open, "0", out.holds_open == 0)
    return _ledger(out)


def redis_frozen(platform: Platform, redis: RedisServer) -> Outcome:
    async def fault(traffic: Traffic) -> None:
        traffic.fault_begin()
        redis.freeze()
        await asyncio.sleep(FAULT_S)
        redis.thaw()
        traffic.fault_end()

    out, traffic = _load(platform, "Redis frozen 5 s", fault)
    start, end = traffic.faults[0]
    during = [p.ended - p.started for p in traffic.models if p.started <= end and p.ended >= start]
    out.extra["models_worst_s"] = _round(max(during, default=None))
    out.check("longest stall of a stream (s)", out.longest_stall_s, "<= 0.5", (out.longest_stall_s or 0) <= 0.5)
    out.check("GET /v1/models answers or fails (s)", out.extra["models_worst_s"], "<= 1", during and max(during) <= 1)
    return _ledger(out)


def celery_killed(platform: Platform, redis: RedisServer) -> Outcome:
    """The Celery worker SIGKILLed while 16 streams run and finish; runlocal starts it again."""
    marks: dict[str, float | None] = {}

    async def fault(traffic: Traffic) -> None:
        ready = platform.celery_ready_count()
        pid = platform.celery("worker")
        await asyncio.sleep(3)  # mid-load: streams are running and finishing on both workers
        traffic.fault_begin()
        os.kill(pid, signal.SIGKILL)
        killed = time.perf_counter()

        def back() -> bool:
            new = platform.celery("worker")
            return new is not None and new != pid and platform.celery_ready_count() > ready

        try:
            await asyncio.to_thread(wait_until, back, timeout=60, interval=0.1, what="celery worker ready again")
            marks["celery_back_s"] = time.perf_counter() - killed
        except TimeoutError:
            marks["celery_back_s"] = None
        traffic.fault_end()

    out, traffic = _load(platform, "Celery worker killed", fault)
    back = _round(marks["celery_back_s"])
    out.extra["celery_back_s"] = back
    failed_jobs = sum(out.extra["jobs_failed"].values())
    tail = out.extra["done_to_end_max_s"]
    out.check("requests failed", out.failed + out.never_ended, "0", out.failed + out.never_ended == 0)
    out.check("stream ends after its worker's done (s)", tail, "<= 1", tail is not None and tail <= 1)
    out.check("jobs finished by workers become failed", failed_jobs, "0", failed_jobs == 0)
    out.check("Celery running again (s)", back, "<= 10", back is not None and back <= 10)
    return _ledger(out)


def server_killed(platform: Platform, redis: RedisServer) -> Outcome:
    marks: dict[str, float | None] = {"serving_s": None, "workers_back_s": None}

    async def fault(traffic: Traffic) -> None:
        pid = platform.server()
        traffic.fault_begin()
        marks["killed_at"] = time.perf_counter()
        os.kill(pid, signal.SIGKILL)
        await asyncio.to_thread(platform.runlocal.popen.wait, 60)  # runlocal exits when daphne dies
        restarted = traffic.fault_end()
        restarted_at = timezone.now()
        await asyncio.to_thread(platform.launch)
        await asyncio.to_thread(wait_until, platform.serving, timeout=120, interval=0.05, what="serving again")
        marks["serving_s"] = time.perf_counter() - restarted
        serving = time.perf_counter()

        def all_back() -> bool:
            return platform.workers_online(since=restarted_at) == len(platform.workers)

        try:
            await asyncio.to_thread(wait_until, all_back, timeout=120, interval=0.2, what="every worker back")
            marks["workers_back_s"] = time.perf_counter() - serving
        except TimeoutError:
            marks["workers_back_s"] = None

    out, traffic = _load(
        platform, "Server process killed mid-stream", fault, max_tokens=LONG, warmup_s=5.0, after_s=20.0
    )
    cut = [s for s in traffic.streams if s.started < marks["killed_at"] and not s.result.ok and s.result.ids]
    differences = []
    for stream in cut:
        delivered = len(stream.result.content.split())
        billed = measures.billed_tokens(public_id=next(iter(stream.result.ids)))
        differences.append(delivered if billed is None else abs(billed - delivered))
    worst = max(differences, default=None)
    out.extra.update(
        streams_cut=len(cut),
        billing_gap_tokens_max=worst,
        serving_s=_round(marks["serving_s"]),
        workers_back_s=_round(marks["workers_back_s"]),
    )
    out.check(
        "delivered tokens billed within a second's worth (tokens)",
        worst,
        f"<= {RATE:.0f}",
        worst is not None and worst <= RATE,
    )
    out.check("workers wrongly faulted", out.workers_faulted, "0", out.workers_faulted == 0)
    out.check(
        "serving again after the restart (s)",
        out.extra["serving_s"],
        "<= 5",
        marks["serving_s"] is not None and marks["serving_s"] <= 5,
    )
    back = out.extra["workers_back_s"]
    out.check("every worker back after serving (s)", back, "<= 10", back is not None and back <= 10)
    return _ledger(out)


def _checkout(session_id: str, event_id: str, user_id: int) -> str:
    session = {
        "id": session_id,
        "object": "checkout.session",
        "amount_total": 1000,
        "currency": "usd",
        "payment_status": "paid",
        "payment_intent": f"pi_{session_id}",
        "client_reference_id": str(user_id),
        "metadata": {"user_id": str(user_id)},
    }
    event = {
        "id": event_id,
        "object": "event",
        "type": "checkout.session.completed",
        "livemode": False,
        "data": {"object": session},
    }
    return json.dumps(event)


def stripe_concurrent(platform: Platform, redis: RedisServer, *, rounds: int = 5) -> Outcome:
    """Two events for one checkout session the platform never recorded, sent at the same instant."""
    from accounts.models import User
    from billing.models import LedgerEntry

    secret = platform.env["STRIPE_WEBHOOK_SECRET"]
    user_id = User.objects.get(email="bench-client@bench.invalid").pk
    out = Outcome(scenario="Stripe: 2 concurrent events, unrecorded session")
    statuses, credits = [], []
    with ThreadPoolExecutor(2) as pool:
        for _ in range(rounds):
            session_id = f"cs_chaos_{uuid.uuid4().hex[:12]}"
            events = [f"evt_chaos_{uuid.uuid4().hex[:12]}" for _ in range(2)]
            barrier = Barrier(2)

            def post(event_id: str, session_id=session_id, barrier=barrier) -> int:
                payload = _checkout(session_id, event_id, user_id)
                header = stripe.WebhookSignature.generate_signature_header(payload, secret)
                headers = {"Stripe-Signature": header, "Content-Type": "application/json"}
                barrier.wait()
                return httpx.post(
                    f"{platform.url}/webhooks/stripe/", content=payload, headers=headers, timeout=30
                ).status_code

            statuses += list(pool.map(post, events))
            credits.append(LedgerEntry.objects.filter(kind="topup", stripe_event_id__in=events).count())
    out.requests = len(statuses)
    out.failed = sum(not 200 <= status < 300 for status in statuses)
    out.double_charges = sum(count > 1 for count in credits)
    out.extra.update(statuses=sorted(set(statuses)), credits_per_session=credits)
    out.check("events answered 2xx", f"{out.requests - out.failed}/{out.requests}", "all", out.failed == 0)
    out.check("credits per session", credits, "1 each", all(count == 1 for count in credits))
    return _ledger(out)


SCENARIOS = {
    "stripe-concurrent": stripe_concurrent,
    "redis-frozen": redis_frozen,
    "celery-killed": celery_killed,
    "redis-killed": redis_killed,
    "server-killed": server_killed,
}
FAST = ["stripe-concurrent", "redis-frozen", "celery-killed"]
