"""Reads for a user's own pages: usage per day and model, their workers, one generation's stats.

Job rows carry the tokens; what a job cost is billing's Hold for it (its `charged` amount in the
hold's token type, `usd_charged` in USD). A hold is looked up by the job's public id or its uuid,
whichever billing keyed it with; daily spend is read from holds directly (they carry the model).
"""

import datetime
from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal

from django.db.models import CharField, Count, DurationField, ExpressionWrapper, F, Q, Sum, Value
from django.db.models.functions import Cast, Replace, TruncDate
from django.utils import timezone

from accounts.models import TokenType
from billing.models import ZERO, Hold, LedgerEntry, Wallet
from inference.models import Job, Worker
from inference.selectors import worker_fresh_since

DAYS = 30
AMOUNT_PLACES = Decimal("0.000000001")
USD_PLACES = Decimal("0.000000000000000001")


def _exact(value: Decimal | None, places: Decimal = AMOUNT_PLACES) -> Decimal:
    # PostgreSQL sums exactly; SQLite (embedded mode) sums in floating point: drop its noise.
    return (value or ZERO).quantize(places)


@dataclass
class UsageRow:
    day: datetime.date
    model_id: str
    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    reasoning_tokens: int = 0
    spend: dict[str, Decimal] = field(default_factory=lambda: {t: ZERO for t in TokenType.values})
    spend_usd: Decimal = ZERO

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def add(self, other: "UsageRow") -> None:
        self.requests += other.requests
        self.prompt_tokens += other.prompt_tokens
        self.completion_tokens += other.completion_tokens
        self.reasoning_tokens += other.reasoning_tokens
        for token_type, amount in other.spend.items():
            self.spend[token_type] += amount
        self.spend_usd += other.spend_usd


def usage_days(*, days: int = DAYS, now: datetime.datetime | None = None) -> list[datetime.date]:
    """The last `days` UTC days, oldest first, today last."""
    today = (now or timezone.now()).astimezone(datetime.UTC).date()
    return [today - datetime.timedelta(days=offset) for offset in range(days - 1, -1, -1)]


def _since(first_day: datetime.date) -> datetime.datetime:
    return datetime.datetime.combine(first_day, datetime.time(), tzinfo=datetime.UTC)


def usage_rows(*, user, days: int = DAYS, now: datetime.datetime | None = None) -> list[UsageRow]:
    """One row per (UTC day, model) with any request or spend in the window, by day then model."""
    since = _since(usage_days(days=days, now=now)[0])
    day = TruncDate("created_at", tzinfo=datetime.UTC)
    rows: dict[tuple, UsageRow] = {}

    def row(key_day, model_id) -> UsageRow:
        return rows.setdefault((key_day, model_id), UsageRow(day=key_day, model_id=model_id))

    jobs = (
        Job.objects.filter(user=user, created_at__gte=since)
        .annotate(day=day)
        .values("day", "model_id")
        .annotate(
            requests=Count("id"),
            prompt=Sum("prompt_tokens"),
            completion=Sum("completion_tokens"),
            reasoning=Sum("reasoning_tokens"),
        )
    )
    for item in jobs:
        target = row(item["day"], item["model_id"])
        target.requests += item["requests"]
        target.prompt_tokens += item["prompt"] or 0
        target.completion_tokens += item["completion"] or 0
        target.reasoning_tokens += item["reasoning"] or 0
    holds = (
        Hold.objects.filter(wallet__user=user, created_at__gte=since, status=Hold.Status.SETTLED)
        .annotate(day=day)
        .values("day", "model_id", "wallet__token_type")
        .annotate(amount=Sum("charged"), usd=Sum("usd_charged"))
    )
    for hold in holds:
        target = row(hold["day"], hold["model_id"])
        target.spend[hold["wallet__token_type"]] += _exact(hold["amount"])
        target.spend_usd += _exact(hold["usd"], USD_PLACES)
    return sorted(rows.values(), key=lambda r: (r.day, r.model_id))


def usage_by_day(rows: list[UsageRow], *, days: list[datetime.date]) -> list[UsageRow]:
    """Every day of the window (empty days included), all models together."""
    totals = {day: UsageRow(day=day, model_id="") for day in days}
    for item in rows:
        if item.day in totals:
            totals[item.day].add(item)
    return list(totals.values())


def usage_by_model(rows: list[UsageRow]) -> list[UsageRow]:
    totals: dict[str, UsageRow] = {}
    for item in rows:
        totals.setdefault(item.model_id, UsageRow(day=item.day, model_id=item.model_id)).add(item)
    return sorted(totals.values(), key=lambda r: (-r.requests, r.model_id))


def usage_total(rows: list[UsageRow]) -> UsageRow:
    total = UsageRow(day=datetime.date.min, model_id="")
    for item in rows:
        total.add(item)
    return total


def usage_matrix(rows: list[UsageRow], *, days: list[datetime.date], metric: str) -> dict[str, list]:
    """Model id → one value of `metric` (requests, tokens or spend_usd) per day of `days`."""
    index = {day: i for i, day in enumerate(days)}
    matrix: dict[str, list] = defaultdict(lambda: [ZERO if metric == "spend_usd" else 0] * len(days))
    for item in rows:
        if item.day in index:
            value = item.total_tokens if metric == "tokens" else getattr(item, metric)
            matrix[item.model_id][index[item.day]] += value
    return dict(sorted(matrix.items()))


# One job: cost and timing.


def job_hold(job: Job) -> Hold | None:
    return Hold.objects.select_related("wallet").filter(job_id__in=[job.public_id, str(job.id)]).first()


def job_cost(hold: Hold | None) -> dict | None:
    """{"token_type", "amount", "usd"} as exact decimal strings once billing closed the hold; else None."""
    if hold is None or hold.status == Hold.Status.OPEN:
        return None
    return {
        "token_type": hold.wallet.token_type,
        "amount": f"{hold.charged.normalize():f}",
        "usd": f"{hold.usd_charged.normalize():f}",
    }


def _ms(start: datetime.datetime | None, end: datetime.datetime | None) -> int | None:
    if start is None or end is None:
        return None
    return max(0, round((end - start).total_seconds() * 1000))


@dataclass(frozen=True)
class JobTiming:
    queue_ms: int | None
    ttft_ms: int | None
    generation_ms: int | None
    latency_ms: int | None
    tokens_per_second: Decimal | None


def job_timing(job: Job) -> JobTiming:
    """From the request's arrival: waiting for a worker, to the first token, generating, in all."""
    generation_ms = _ms(job.first_token_at, job.finished_at)
    rate = None
    if generation_ms and job.completion_tokens:
        rate = (Decimal(job.completion_tokens) * 1000 / generation_ms).quantize(Decimal("0.1"))
    return JobTiming(
        queue_ms=_ms(job.created_at, job.assigned_at),
        ttft_ms=_ms(job.created_at, job.first_token_at),
        generation_ms=generation_ms,
        latency_ms=_ms(job.created_at, job.finished_at),
        tokens_per_second=rate,
    )


def generation_get(*, user, public_id: str) -> Job | None:
    """The user's own job by its chatcmpl id; None for anyone else's or an unknown id."""
    if not public_id or len(public_id) > 64 or "\x00" in public_id:
        return None
    return Job.objects.select_related("model").filter(user=user, public_id=public_id).first()


# A worker owner's workers.


@dataclass
class WorkerStats:
    worker: Worker
    state: str
    models: list[str]
    jobs_completed: int
    jobs_failed: int
    tokens_served: int
    tokens_per_second: Decimal | None
    earned: Decimal


def worker_state(worker: Worker) -> str:
    """online / draining / paused / banned / offline; a worker whose heartbeats stopped counts as offline,
    one paused for too many failures (inference.services.trust) as paused."""
    if worker.status == Worker.Status.BANNED:
        return "banned"
    if worker.paused_until and worker.paused_until > timezone.now():
        return "paused"
    if worker.status == Worker.Status.OFFLINE or not worker.last_heartbeat:
        return "offline"
    if worker.last_heartbeat < worker_fresh_since():
        return "offline"
    return worker.status


def _hex(expression):
    # A uuid as text is hyphenated on PostgreSQL and bare hex on SQLite: compare without hyphens.
    return Replace(expression, Value("-"), Value(""))


def _job_keyed(rows, jobs):
    """The ledger/hold `rows` keyed by any of `jobs`, by public id or by uuid."""
    by_uuid = jobs.annotate(key=_hex(Cast("id", CharField()))).values("key")
    return rows.annotate(bare_key=_hex(F("job_id"))).filter(
        Q(job_id__in=jobs.values("public_id")) | Q(bare_key__in=by_uuid)
    )


def worker_throughput(jobs) -> tuple[int, Decimal | None]:
    """Tokens served by completed `jobs` and their generation speed (tokens per second of generating)."""
    timed = jobs.filter(status=Job.Status.COMPLETED)
    totals = timed.aggregate(tokens=Sum("completion_tokens"))
    generating = timed.filter(first_token_at__isnull=False, finished_at__isnull=False).aggregate(
        tokens=Sum("completion_tokens"),
        time=Sum(ExpressionWrapper(F("finished_at") - F("first_token_at"), output_field=DurationField())),
    )
    tokens = totals["tokens"] or 0
    seconds = generating["time"].total_seconds() if generating["time"] else 0
    if not seconds or not generating["tokens"]:
        return tokens, None
    rate = Decimal(generating["tokens"]) / Decimal(str(seconds))
    return tokens, rate.quantize(Decimal("0.1"))


def worker_earned(*, owner, jobs) -> Decimal:
    rewards = _job_keyed(LedgerEntry.objects.filter(kind=LedgerEntry.Kind.REWARD, wallet__user=owner), jobs)
    return _exact(rewards.aggregate(total=Sum("amount"))["total"])


def my_workers(*, user) -> list[WorkerStats]:
    stats = []
    for worker in Worker.objects.filter(owner=user).prefetch_related("served_models").order_by("name"):
        jobs = Job.objects.filter(worker=worker)
        counts = jobs.aggregate(
            completed=Count("id", filter=Q(status=Job.Status.COMPLETED)),
            failed=Count("id", filter=Q(status=Job.Status.FAILED)),
        )
        tokens, rate = worker_throughput(jobs)
        stats.append(
            WorkerStats(
                worker=worker,
                state=worker_state(worker),
                models=[model.pk for model in worker.served_models.all()],
                jobs_completed=counts["completed"],
                jobs_failed=counts["failed"],
                tokens_served=tokens,
                tokens_per_second=rate,
                earned=worker_earned(owner=user, jobs=jobs),
            )
        )
    return stats


@dataclass(frozen=True)
class Earnings:
    earned: Decimal
    available: Decimal
    escrowed: Decimal | None


def earnings(*, user) -> Earnings:
    """All worker rewards ever credited to `user`, their SOGNI wallet's available balance, and the
    rewards still in escrow (probation, billing.escrow.escrow_probation_ends)."""
    from billing.selectors import wallet_escrowed

    total = LedgerEntry.objects.filter(kind=LedgerEntry.Kind.REWARD, wallet__user=user).aggregate(t=Sum("amount"))
    wallet = Wallet.objects.filter(user=user, token_type=TokenType.SOGNI).first()
    escrowed = wallet_escrowed(wallet=wallet) if wallet else ZERO
    return Earnings(earned=_exact(total["t"]), available=wallet.available if wallet else ZERO, escrowed=escrowed)
