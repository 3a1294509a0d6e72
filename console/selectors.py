"""Reads for the operator console: the network now, jobs, and money per day."""

import datetime
from dataclasses import dataclass
from decimal import Decimal

from django.db.models import Count, DecimalField, F, Min, OuterRef, Q, QuerySet, Subquery, Sum
from django.db.models.functions import TruncDate
from django.utils import timezone

from accounts.models import User
from billing.models import USD, ZERO, Hold, LedgerEntry, SogniRate
from inference.models import Job, LlmModel, Worker
from inference.selectors import worker_fresh_since
from inference.usage.selectors import USD_PLACES, usage_days, worker_state


@dataclass(frozen=True)
class QueueDepth:
    model_id: str
    queued: int
    oldest: datetime.datetime | None
    online_workers: int
    free_slots: int


@dataclass(frozen=True)
class WorkerRow:
    worker: Worker
    state: str
    models: list[str]
    completed: int = 0
    failed: int = 0


@dataclass(frozen=True)
class Overview:
    online: list[WorkerRow]
    slots: int
    in_flight: int
    queues: list[QueueDepth]
    by_status: list[tuple[str, int, int]]  # (status, jobs created in the last hour, in the last 24 hours)


def _live_workers() -> QuerySet[Worker]:
    return Worker.objects.filter(
        status__in=(Worker.Status.ONLINE, Worker.Status.DRAINING), last_heartbeat__gte=worker_fresh_since()
    )


def _status_counts(since: datetime.datetime) -> dict[str, int]:
    counts = {status: 0 for status in Job.Status.values}
    for row in Job.objects.filter(created_at__gte=since).values("status").annotate(n=Count("id")):
        counts[row["status"]] = row["n"]
    return counts


def overview(*, now: datetime.datetime | None = None) -> Overview:
    now = now or timezone.now()
    online = list(_live_workers().select_related("owner").prefetch_related("served_models").order_by("name", "pk"))
    queued = {
        row["model_id"]: row
        for row in Job.objects.filter(status=Job.Status.QUEUED)
        .values("model_id")
        .annotate(n=Count("id"), oldest=Min("created_at"))
    }
    capacity: dict[str, list[int]] = {}
    for worker in online:
        for model in worker.served_models.all():
            workers, free = capacity.setdefault(model.pk, [0, 0])
            ready = worker.status == Worker.Status.ONLINE
            capacity[model.pk] = [workers + ready, free + (max(worker.slots - worker.in_flight, 0) if ready else 0)]
    queues = [
        QueueDepth(
            model_id=model_id,
            queued=queued[model_id]["n"] if model_id in queued else 0,
            oldest=queued[model_id]["oldest"] if model_id in queued else None,
            online_workers=capacity.get(model_id, [0, 0])[0],
            free_slots=capacity.get(model_id, [0, 0])[1],
        )
        for model_id in LlmModel.objects.filter(Q(enabled=True) | Q(id__in=list(queued))).values_list("id", flat=True)
    ]
    hour = _status_counts(now - datetime.timedelta(hours=1))
    day = _status_counts(now - datetime.timedelta(days=1))
    return Overview(
        online=[
            WorkerRow(worker=w, state=worker_state(w), models=[m.pk for m in w.served_models.all()]) for w in online
        ],
        slots=sum(w.slots for w in online),
        in_flight=sum(w.in_flight for w in online),
        queues=queues,
        by_status=[(status, hour[status], day[status]) for status in Job.Status.values],
    )


def worker_rows(*, state: str = "") -> list[WorkerRow]:
    workers = (
        Worker.objects.select_related("owner")
        .prefetch_related("served_models")
        .annotate(
            completed=Count("jobs", filter=Q(jobs__status=Job.Status.COMPLETED)),
            failed=Count("jobs", filter=Q(jobs__status=Job.Status.FAILED)),
        )
        .order_by("name", "pk")
    )
    rows = [
        WorkerRow(
            worker=w,
            state=worker_state(w),
            models=[m.pk for m in w.served_models.all()],
            completed=w.completed,
            failed=w.failed,
        )
        for w in workers
    ]
    order = {"online": 0, "draining": 1, "offline": 2, "banned": 3}
    rows.sort(key=lambda row: order.get(row.state, 9))
    return [row for row in rows if not state or row.state == state]


def jobs_filtered(*, status: str = "", model: str = "", user_email: str = "", worker: str = "") -> QuerySet[Job]:
    """Newest first. `worker` is a worker id or a name; `user_email` matches case-insensitively, in part."""
    jobs = Job.objects.select_related("user", "worker", "model").order_by("-created_at")
    if status:
        jobs = jobs.filter(status=status)
    if model:
        jobs = jobs.filter(model_id=model)
    if user_email:
        jobs = jobs.filter(user__email__icontains=user_email.strip())
    if worker:
        worker = worker.strip()
        by_id = worker.isdigit() and len(worker) <= 18  # within a bigint
        jobs = jobs.filter(worker_id=int(worker)) if by_id else jobs.filter(worker__name=worker)
    return jobs


def job_detail(*, public_id: str) -> Job | None:
    if not public_id or len(public_id) > 64 or "\x00" in public_id:
        return None
    return Job.objects.select_related("user", "worker", "model").filter(public_id=public_id).first()


@dataclass(frozen=True)
class MoneyDay:
    day: datetime.date
    revenue_usd: Decimal
    payouts_sogni: Decimal
    payouts_usd: Decimal


def money_by_day(*, days: int = 30, now: datetime.datetime | None = None) -> list[MoneyDay]:
    """Per UTC day: charge entries in USD (each at the token rate its hold was priced at) and reward
    entries in SOGNI and in USD (at the SOGNI rate in effect when each was credited)."""
    window = usage_days(days=days, now=now)
    since = datetime.datetime.combine(window[0], datetime.time(), tzinfo=datetime.UTC)
    day = TruncDate("created_at", tzinfo=datetime.UTC)
    usd_field = DecimalField(**USD)
    hold_rate = Subquery(Hold.objects.filter(job_id=OuterRef("job_id")).values("usd_per_token")[:1])
    charges = (
        LedgerEntry.objects.filter(kind=LedgerEntry.Kind.CHARGE, created_at__gte=since)
        .annotate(day=day, rate=hold_rate)
        .values("day")
        .annotate(usd=Sum(-F("amount") * F("rate"), output_field=usd_field))
    )
    sogni_rate = Subquery(
        SogniRate.objects.filter(effective_from__lte=OuterRef("created_at"))
        .order_by("-effective_from", "-id")
        .values("usd_per_sogni")[:1]
    )
    rewards = (
        LedgerEntry.objects.filter(kind=LedgerEntry.Kind.REWARD, created_at__gte=since)
        .annotate(day=day, rate=sogni_rate)
        .values("day")
        .annotate(sogni=Sum("amount"), usd=Sum(F("amount") * F("rate"), output_field=usd_field))
    )
    revenue = {row["day"]: row["usd"] or ZERO for row in charges}
    payouts = {row["day"]: (row["sogni"] or ZERO, row["usd"] or ZERO) for row in rewards}
    return [
        MoneyDay(
            day=d,
            revenue_usd=revenue.get(d, ZERO).quantize(USD_PLACES),
            payouts_sogni=payouts.get(d, (ZERO, ZERO))[0].quantize(Decimal("0.000000001")),
            payouts_usd=payouts.get(d, (ZERO, ZERO))[1].quantize(USD_PLACES),
        )
        for d in window
    ]


def accounts_search(*, query: str, limit: int = 50) -> list[User]:
    users = User.objects.order_by("email")
    if query.strip():
        users = users.filter(email__icontains=query.strip())
    return list(users.select_related("api_key")[:limit])
