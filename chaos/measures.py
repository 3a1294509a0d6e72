"""What a scenario left in the database: open holds, double charges, workers blamed, failed jobs, the ledger."""

from __future__ import annotations

import time
from datetime import datetime

from django.db.models import Count

COUNTERS = ("jobs_failed", "jobs_aborted", "faults_in_window")


def workers_snapshot(*, names: list[str]) -> dict[str, dict]:
    from inference.models import Worker

    fields = (*COUNTERS, "paused_until", "flagged_reason")
    return {row["name"]: row for row in Worker.objects.filter(name__in=names).values("name", *fields)}


def workers_faulted(*, before: dict[str, dict], names: list[str]) -> list[str]:
    """Workers whose fault counters rose, or that were paused or flagged anew, since `before`."""
    faulted = []
    for name, now in workers_snapshot(names=names).items():
        then = before.get(name) or {}
        rose = any(now[counter] > then.get(counter, 0) for counter in COUNTERS)
        paused = now["paused_until"] is not None and now["paused_until"] != then.get("paused_until")
        if rose or paused or (now["flagged_reason"] and now["flagged_reason"] != then.get("flagged_reason")):
            faulted.append(name)
    return sorted(faulted)


def holds_open(*, since: datetime) -> int:
    from billing.models import Hold

    return Hold.objects.filter(status=Hold.Status.OPEN, created_at__gte=since).count()


def holds_wait_closed(*, since: datetime, timeout: float) -> int:
    """Open holds of the scenario once they are all closed, or after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while (count := holds_open(since=since)) and time.monotonic() < deadline:
        time.sleep(1)
    return count


def double_charges(*, since: datetime) -> int:
    """Jobs charged or rewarded more than once, or with more than one settlement of their hold."""
    from billing.models import LedgerEntry

    repeated = (
        LedgerEntry.objects.filter(created_at__gte=since, kind__in=["charge", "reward", "release"])
        .exclude(job_id="")
        .values("job_id", "kind", "wallet_id")
        .annotate(n=Count("id"))
        .filter(n__gt=1)
    )
    return len({row["job_id"] for row in repeated})


def jobs_failed(*, since: datetime) -> dict[str, int]:
    """Failed jobs of the scenario by error code."""
    from inference.models import Job

    rows = Job.objects.filter(created_at__gte=since, status=Job.Status.FAILED).values("error_code")
    rows = rows.annotate(n=Count("id"))
    return {row["error_code"] or "?": row["n"] for row in rows}


def jobs_open(*, ids: list[str]) -> bool:
    """Whether any of these jobs is still assigned or running."""
    from inference.models import Job

    return Job.objects.filter(pk__in=ids, status__in=Job.ACTIVE).exists()


def billed_tokens(*, public_id: str) -> int | None:
    """Completion tokens the job's hold was settled for; None while it is open."""
    from billing.models import Hold
    from inference.models import Job

    job = Job.objects.filter(public_id=public_id).first()
    hold = job and Hold.objects.filter(job_id=str(job.id)).first()
    if hold is None or hold.status == Hold.Status.OPEN:
        return None
    return hold.completion_tokens


def ledger_violations() -> list[str]:
    from billing.selectors import ledger_invariant_violations

    return ledger_invariant_violations()
