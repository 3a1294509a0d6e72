"""Worker trust: statistics at each job end, automatic pause, implausible-throughput flag.

Success is one UPDATE; a fault (failed or dropped job) locks the worker row to count faults in
the current hour and pauses the worker past WORKER_MAX_FAILURES_PER_HOUR for WORKER_PAUSE_SECONDS.
An owner whose workers were paused more than OWNER_MAX_PAUSES_PER_DAY times in a day is paused as
a whole (every worker it has or registers) for OWNER_PAUSE_SECONDS. Dispatch skips paused workers
and orders the rest healthiest and fastest first.

Only what a worker caused is a fault: a client error it reports (CLIENT_ERRORS) and the client's
cancel are not, nor a lease that lapsed while the platform could not hear it (inference.services.leases).
"""

import functools
import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from inference.models import Job, OwnerTrust, Worker

logger = logging.getLogger(__name__)

# A job this short says nothing about a worker's speed (one token in no time is not a sign of fraud).
MIN_TOKENS_TO_JUDGE = 32
# Errors a worker reports about the request itself: the client's doing, never the worker's fault.
CLIENT_ERRORS = ("invalid_request", "context_length_exceeded")


def _ms(start: datetime | None, end: datetime | None) -> int:
    if start is None or end is None or end < start:
        return 0
    return int((end - start).total_seconds() * 1000)


@functools.cache
def _completed_sql() -> str:
    """Every completed job runs this: raw, as the ORM builds an F() UPDATE anew each time (~0.5 ms)."""
    return (
        f"UPDATE {Worker._meta.db_table} SET jobs_completed = jobs_completed + 1, "  # noqa: S608 - the name is from model meta
        "ttft_ms_total = ttft_ms_total + %s, tokens_generated = tokens_generated + %s, "
        "generation_ms_total = generation_ms_total + %s WHERE id = %s"
    )


def worker_completed_record(*, job: Job) -> None:
    """A job the worker finished: count it, add its TTFT and throughput, flag an implausible rate."""
    if not job.worker_id:
        return
    ttft_ms = _ms(job.assigned_at, job.first_token_at)
    generation_ms = _ms(job.first_token_at, job.finished_at)
    tokens = job.completion_tokens
    with connection.cursor() as cursor:
        cursor.execute(_completed_sql(), [ttft_ms, tokens, generation_ms, job.worker_id])
    if tokens >= MIN_TOKENS_TO_JUDGE:
        rate = tokens * 1000 / max(generation_ms, 1)
        if rate > settings.WORKER_MAX_PLAUSIBLE_TPS:
            reason = f"{rate:.0f} tokens/s on job {job.public_id} (limit {settings.WORKER_MAX_PLAUSIBLE_TPS:g})"
            Worker.objects.filter(pk=job.worker_id).update(flagged_reason=reason[:200])
            logger.warning("worker %s flagged: implausible throughput, %s", job.worker_id, reason)


def worker_fault_record(*, worker_id: int | None, kind: str, now: datetime | None = None) -> bool:
    """A job the worker failed (`failed`), dropped (`aborted`) or misreported (`discrepancy`: its usage
    claims off the platform's counts). True if this fault paused it."""
    if not worker_id:
        return False
    now = now or timezone.now()
    counter = {"failed": "jobs_failed", "aborted": "jobs_aborted", "discrepancy": "discrepancies"}[kind]
    owner_id = None
    with transaction.atomic():
        worker = Worker.objects.select_for_update().filter(pk=worker_id).first()
        if worker is None:
            return False
        setattr(worker, counter, getattr(worker, counter) + 1)
        if worker.faults_window_start is None or worker.faults_window_start < now - timedelta(hours=1):
            worker.faults_window_start, worker.faults_in_window = now, 1
        else:
            worker.faults_in_window += 1
        paused = worker.faults_in_window > settings.WORKER_MAX_FAILURES_PER_HOUR and not worker_paused(worker, now)
        if paused:
            worker.paused_until = now + timedelta(seconds=settings.WORKER_PAUSE_SECONDS)
            logger.warning(
                "worker %s paused until %s: %s faults within an hour",
                worker_id,
                worker.paused_until,
                worker.faults_in_window,
            )
        worker.save(update_fields=[counter, "faults_window_start", "faults_in_window", "paused_until"])
        owner_id = worker.owner_id
    if paused:  # after the worker's own transaction: owner then workers is the only lock order
        owner_pause_count(owner_id=owner_id, now=now)
    return paused


def owner_pause_count(*, owner_id: int, now: datetime) -> bool:
    """One of the owner's workers was just paused; True if that paused the owner as a whole."""
    with transaction.atomic():
        trust, _ = OwnerTrust.objects.select_for_update().get_or_create(owner_id=owner_id)
        if trust.pauses_window_start is None or trust.pauses_window_start < now - timedelta(days=1):
            trust.pauses_window_start, trust.pauses_in_window = now, 1
        else:
            trust.pauses_in_window += 1
        paused = trust.pauses_in_window > settings.OWNER_MAX_PAUSES_PER_DAY and not (
            trust.paused_until and trust.paused_until > now
        )
        if paused:
            trust.paused_until = now + timedelta(seconds=settings.OWNER_PAUSE_SECONDS)
            Worker.objects.filter(owner_id=owner_id).filter(
                Q(paused_until__isnull=True) | Q(paused_until__lt=trust.paused_until)
            ).update(paused_until=trust.paused_until)
            logger.warning(
                "owner %s paused until %s: workers paused %s times in a day",
                owner_id,
                trust.paused_until,
                trust.pauses_in_window,
            )
        trust.save()
    return paused


def worker_unpause(*, worker: Worker) -> None:
    """An operator lifts an automatic pause (the owner's too, if it is paused as a whole: the operator
    vouches for it); the fault counts start over."""
    with transaction.atomic():
        trust = OwnerTrust.objects.select_for_update().filter(owner_id=worker.owner_id).first()
        if trust is not None and trust.paused_until:
            Worker.objects.filter(owner_id=worker.owner_id, paused_until=trust.paused_until).update(paused_until=None)
            trust.paused_until, trust.pauses_in_window, trust.pauses_window_start = None, 0, None
            trust.save()
        Worker.objects.filter(pk=worker.pk).update(paused_until=None, faults_in_window=0, faults_window_start=None)


def worker_paused(worker: Worker, now: datetime | None = None) -> bool:
    return worker.paused_until is not None and worker.paused_until > (now or timezone.now())


def job_outcome_record(*, job: Job | None) -> None:
    """After a worker connection ended `job`: completed, or a fault if it failed for a reason of the
    worker's (not a client error it reported; a client's cancel ends a job cancelled, not failed)."""
    if job is None:
        return
    if job.status == Job.Status.COMPLETED:
        worker_completed_record(job=job)
    elif job.status == Job.Status.FAILED and job.error_code not in CLIENT_ERRORS:
        worker_fault_record(worker_id=job.worker_id, kind="failed")
