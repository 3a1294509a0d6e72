"""Job leases and the reaper: no job stays assigned or running forever.

An assigned job holds a lease (Job.lease_expires_at) until JOB_LEASE_SECONDS after the last sign of
life: its assignment, its first token, its progress (the tokens relayed, saved with a fresh lease
every JOB_PROGRESS_SECONDS while it streams) or a heartbeat listing it. The reaper (Celery beat,
every JOB_REAPER_SECONDS) requeues a job whose lease expired before its first token, fails one that
had streamed (charged for the tokens its progress recorded as delivered, no reward), fails any job
past JOB_MAX_DURATION_SECONDS, takes a silent worker out of dispatch, and releases billing holds
left open by jobs that are gone.

A lapse counts against the worker only when the platform was there to hear it:
- the reaper records each run (PlatformBeat); if it had not run for more than a lease (Celery, beat,
  Redis or the database were down), leases could not be renewed or jobs completed meanwhile, so its
  first run back gives every active job a fresh lease instead of reaping it;
- the fault is recorded by the worker's connection when it receives the job's revoke, and only for a
  job it had been sent: a connection whose server process died (restarted) hears nothing, so the
  worker of a job lost with its server is not blamed.
"""

import logging
import uuid
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import NamedTuple

from django.conf import settings
from django.db import transaction
from django.db.models import Case, PositiveIntegerField, Q, Value, When
from django.utils import timezone

from billing.models import Hold
from billing.services.holds import hold_release
from inference.counting import completion_count
from inference.models import Job, PlatformBeat, Worker
from inference.protocol import CLOSE_HEARTBEAT_TIMEOUT
from inference.relay import REPLY_ERROR, WORKER_KICK, send_on_commit
from inference.selectors import model_resolve
from inference.services.jobs import Relayed, job_end, job_locked, job_requeue_locked
from inference.services.settlement import job_done_message

logger = logging.getLogger(__name__)

# To a worker connection: forget this job (the platform took it back); the worker is told to cancel.
# Its `fault` ("aborted", "failed") is recorded against the worker if the connection held the job.
WORKER_JOB_REVOKE = "job.revoke"
REAPER_BEAT = "lease_reaper"


def lease_deadline(now: datetime | None = None) -> datetime:
    return (now or timezone.now()) + timedelta(seconds=settings.JOB_LEASE_SECONDS)


class Progress(NamedTuple):
    """What a connection relayed of one job so far."""

    model_id: str
    max_tokens: int
    relayed: Relayed


def _delivered_count(progress: Progress) -> int:
    """The platform's count of the completion text relayed (as at the job's end), at most max_tokens."""
    model = model_resolve(model_id=progress.model_id)
    text, claimed = progress.relayed.output, progress.relayed.claimed_tokens
    if model is None:  # disabled meanwhile: bounded, as a model without a tokenizer is
        count = min(claimed, len(text.encode("utf-8")))
    else:
        count, _ = completion_count(model=model, text=text, claimed=claimed)
    return min(count, progress.max_tokens)


def jobs_progress_save(*, channel_name: str, progress: dict[str, Progress]) -> int:
    """One UPDATE for the jobs a connection relayed tokens of since its last save: the tokens delivered
    so far by the platform's count (what a job is billed for if its server process dies before it
    ends: the reaper's or a reconnecting worker's release charges them) and a fresh lease. Only jobs
    the connection still holds; how many were written."""
    if not progress:
        return 0
    rows = {
        job_id: (_delivered_count(p), len(p.relayed.output.encode("utf-8")), p.relayed.claimed_tokens)
        for job_id, p in progress.items()
    }

    def column(index: int) -> Case:
        whens = [When(pk=uuid.UUID(job_id), then=Value(row[index])) for job_id, row in rows.items()]
        return Case(*whens, output_field=PositiveIntegerField())

    return Job.objects.filter(pk__in=list(rows), worker_channel=channel_name, status__in=Job.ACTIVE).update(
        completion_tokens=column(0),
        output_bytes=column(1),
        claimed_completion_tokens=column(2),
        lease_expires_at=lease_deadline(),
    )


def jobs_lease_renew(*, job_ids: Iterable[str], channel_name: str) -> int:
    """A heartbeat: one UPDATE renews every job the connection lists and holds."""
    ids = [job_id for job_id in job_ids if _is_uuid(job_id)]
    if not ids:
        return 0
    return Job.objects.filter(id__in=ids, worker_channel=channel_name, status__in=Job.ACTIVE).update(
        lease_expires_at=lease_deadline()
    )


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(str(value))
    except ValueError:
        return False
    return True


def _expired(now: datetime) -> Q:
    # A job assigned before leases existed has none: its assignment time stands in.
    lease_cutoff = now - timedelta(seconds=settings.JOB_LEASE_SECONDS)
    return Q(lease_expires_at__lt=now) | Q(lease_expires_at__isnull=True, assigned_at__lt=lease_cutoff)


def _too_long(now: datetime) -> Q:
    return Q(assigned_at__lt=now - timedelta(seconds=settings.JOB_MAX_DURATION_SECONDS))


def _revoke_on_commit(job: Job, channel_name: str, fault: str) -> None:
    if channel_name:
        send_on_commit(channel_name, {"type": WORKER_JOB_REVOKE, "job_id": str(job.id), "fault": fault})


def _worker_silence(worker_id: int | None, channel_name: str, now: datetime) -> bool:
    """The worker whose lease lapsed is silent too: offline (dispatch skips it) and its connection,
    if it is still open somewhere, is closed. True if it was taken out."""
    if not worker_id or not channel_name:
        return False
    silent_since = now - timedelta(seconds=settings.JOB_LEASE_SECONDS)
    taken = (
        Worker.objects.filter(pk=worker_id, channel_name=channel_name)
        .filter(Q(last_heartbeat__lt=silent_since) | Q(last_heartbeat__isnull=True))
        .exclude(status__in=(Worker.Status.OFFLINE, Worker.Status.BANNED))
        .update(status=Worker.Status.OFFLINE)
    )
    if taken:
        send_on_commit(channel_name, {"type": WORKER_KICK, "code": CLOSE_HEARTBEAT_TIMEOUT})
        logger.warning("worker %s let a job lease lapse and is silent: taken offline", worker_id)
    return bool(taken)


def _reap_one(job_id, now: datetime) -> str | None:
    """One job whose lease lapsed or that ran too long; what was done to it, if anything."""
    with transaction.atomic():
        job = job_locked(job_id, channel_name=None, statuses=Job.ACTIVE)
        if job is None:
            return None
        too_long = job.assigned_at is not None and job.assigned_at < now - timedelta(
            seconds=settings.JOB_MAX_DURATION_SECONDS
        )
        if not too_long and not Job.objects.filter(_expired(now), pk=job.pk).exists():
            return None  # renewed meanwhile
        worker_id, channel_name = job.worker_id, job.worker_channel
        fault = "aborted" if job.status == Job.Status.ASSIGNED and not too_long else "failed"
        _revoke_on_commit(job, channel_name, fault)  # before a kick, so the worker hears it first
        _worker_silence(worker_id, channel_name, now)
        if too_long:
            code, outcome = "job_timeout", "timed_out"
            message = f"The job ran longer than the {settings.JOB_MAX_DURATION_SECONDS:g} s limit."
        elif job.status == Job.Status.ASSIGNED:
            job.lease_expires_at = None
            job.save(update_fields=["lease_expires_at"])
            job_requeue_locked(job, reason="the worker went silent before the first token (lease expired)")
            return "requeued"
        else:
            code, outcome = "worker_timeout", "failed"
            message = "The worker serving this request went silent after it had started answering."
        # Charged for the tokens recorded as delivered; the worker earns nothing for a failed job.
        job_end(job, status=Job.Status.FAILED, error_code=code, error_message=message)
        send_on_commit(job.reply_channel, {"type": REPLY_ERROR, "code": code, "message": message})
        return outcome


def _platform_was_away(now: datetime) -> int | None:
    """Record this reaper run. If the last one was more than a lease ago, every active job gets a fresh
    lease (how many), in the same transaction: a concurrent run waits for it and finds none lapsed."""
    with transaction.atomic():
        beat = PlatformBeat.objects.select_for_update().filter(name=REAPER_BEAT).first()
        if beat is None:
            PlatformBeat.objects.create(name=REAPER_BEAT, at=now)
            return None
        last, beat.at = beat.at, max(beat.at, now)
        beat.save(update_fields=["at"])
        if last >= now - timedelta(seconds=settings.JOB_LEASE_SECONDS):
            return None
        renewed = Job.objects.filter(status__in=Job.ACTIVE).update(lease_expires_at=lease_deadline(now))
    logger.warning(
        "lease reaper: not run for %.0f s; %s active job lease(s) renewed, nobody blamed",
        (now - last).total_seconds(),
        renewed,
    )
    return renewed


def jobs_reap_leases(*, now: datetime | None = None) -> dict[str, int]:
    """Act on every active job whose lease lapsed or that ran past JOB_MAX_DURATION_SECONDS (unless the
    reaper itself had not run for more than a lease: then leases are renewed)."""
    now = now or timezone.now()
    renewed = _platform_was_away(now)
    if renewed is not None:
        return {"renewed": renewed}
    counts: dict[str, int] = {}
    due = Job.objects.filter(status__in=Job.ACTIVE).filter(_expired(now) | _too_long(now))
    for job_id in due.values_list("id", flat=True)[:1000]:
        outcome = _reap_one(job_id, now)
        if outcome:
            counts[outcome] = counts.get(outcome, 0) + 1
    if counts:
        logger.warning("lease reaper: %s", counts)
    return counts


def job_outcome_read(*, job_id: str) -> dict | None:
    """For a request that heard nothing for a while: the reply-channel message its job's state calls
    for, if the job has ended (a `done` or `error` lost with the channel layer) or its lease lapsed
    with nobody to reap it (Celery beat down: the job is reaped here). None while it is alive."""
    job = Job.objects.filter(pk=job_id).first()
    if job is None:
        return None
    if job.status in Job.ACTIVE:
        if _reap_one(job.pk, timezone.now()) is None:  # its lease holds (_reap_one checks, under lock)
            return None
        job.refresh_from_db()
    if job.status == Job.Status.COMPLETED:
        return job_done_message(job, hold=Hold.objects.select_related("wallet").filter(job_id=str(job.pk)).first())
    if job.status in (Job.Status.FAILED, Job.Status.CANCELLED):
        return {"type": REPLY_ERROR, "code": job.error_code, "message": job.error_message}
    return None


def holds_release_orphaned(*, now: datetime | None = None) -> int:
    """Open holds older than HOLD_ORPHAN_GRACE_SECONDS whose job has finished or never existed."""
    now = now or timezone.now()
    cutoff = now - timedelta(seconds=settings.HOLD_ORPHAN_GRACE_SECONDS)
    candidates = list(
        Hold.objects.filter(status=Hold.Status.OPEN, created_at__lt=cutoff).values_list("job_id", flat=True)[:1000]
    )
    live = {
        str(job_id)
        for job_id in Job.objects.filter(
            id__in=[job_id for job_id in candidates if _is_uuid(job_id)], status__in=(Job.Status.QUEUED, *Job.ACTIVE)
        ).values_list("id", flat=True)
    }
    released = 0
    for job_id in candidates:
        if job_id not in live:
            hold_release(job_id=job_id)
            released += 1
    if released:
        logger.warning("released %s orphaned hold(s)", released)
    return released


def reliability_sweep() -> dict[str, int]:
    """One reaper pass: lapsed leases and over-long jobs, then orphaned holds."""
    counts = jobs_reap_leases()
    counts["holds_released"] = holds_release_orphaned()
    return counts
