"""Dispatch: give a queued job to an online worker with a free slot, least loaded first.

Never blocks or sleeps: a job that finds no worker stays queued; a slot freeing up (a job ending,
a worker connecting) dispatches the oldest queued jobs of that model.
"""

import logging
import uuid
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Case, F, Value, When
from django.utils import timezone

from inference.models import Job, Worker
from inference.relay import WORKER_JOB_ASSIGN, send_on_commit
from inference.selectors import worker_fresh_since
from inference.services.trust import not_paused

logger = logging.getLogger(__name__)


def _candidates(*, model_id: str):
    return Worker.objects.filter(
        not_paused(),
        status=Worker.Status.ONLINE,
        served_models=model_id,
        in_flight__lt=F("slots"),
        last_heartbeat__gte=worker_fresh_since(),
    )


# Healthy and fast first: unflagged, then the failure rate in tenths, then load, then measured speed.
_FAULTS = F("jobs_failed") + F("jobs_aborted")
_FAILURE_TENTHS = _FAULTS * 10 / (F("jobs_completed") + _FAULTS + 1)
_TOKENS_PER_SECOND = F("tokens_generated") * 1000 / (F("generation_ms_total") + 1)
_FLAGGED = Case(When(flagged_reason="", then=Value(0)), default=Value(1))


def _assign(job: Job) -> bool:
    """Inside a transaction holding the job's row lock: claim a worker slot for it."""
    worker = (
        _candidates(model_id=job.model_id)
        .select_for_update(skip_locked=True, of=("self",))
        .alias(flagged=_FLAGGED, failure_tenths=_FAILURE_TENTHS, speed=_TOKENS_PER_SECOND)
        .order_by(
            "flagged",
            "failure_tenths",
            "in_flight",
            "-speed",
            "-slots",
            F("last_assigned_at").asc(nulls_first=True),
            "id",
        )
        .first()
    )
    if worker is None:
        if _candidates(model_id=job.model_id).exists():
            # Every candidate is locked by a concurrent dispatch: try again once it has committed.
            _dispatch_queued_on_commit(job.model_id)
        return False
    now = timezone.now()
    claimed = Worker.objects.filter(
        pk=worker.pk, status=Worker.Status.ONLINE, channel_name=worker.channel_name, in_flight__lt=F("slots")
    ).update(in_flight=F("in_flight") + 1, last_assigned_at=now)
    if not claimed:
        return False
    job.status = Job.Status.ASSIGNED
    job.worker = worker
    job.worker_channel = worker.channel_name
    job.assigned_at = now
    job.lease_expires_at = now + timedelta(seconds=settings.JOB_LEASE_SECONDS)
    job.attempts += 1
    job.save(update_fields=["status", "worker", "worker_channel", "assigned_at", "lease_expires_at", "attempts"])
    send_on_commit(
        worker.channel_name,
        {
            "type": WORKER_JOB_ASSIGN,
            "job_id": str(job.id),
            "model": job.model_id,
            "request": job.request,
            "reply_channel": job.reply_channel,
            "max_tokens": job.max_tokens,
        },
    )
    return True


def job_dispatch(*, job_id: str | uuid.UUID) -> bool:
    """Assign one queued job if a worker has room; True if it was assigned."""
    with transaction.atomic():
        job = Job.objects.select_for_update(skip_locked=True).filter(id=job_id, status=Job.Status.QUEUED).first()
        if job is None:
            return False
        return _assign(job)


def job_dispatch_new(job: Job) -> None:
    """A job created in the caller's transaction: claim a worker now if one has room, so the first
    token does not wait for a Celery hop; otherwise Celery dispatches it after commit."""
    if not _assign(job):
        dispatch_job_on_commit(job.id)


def jobs_dispatch_queued(*, model_id: str, limit: int = 256) -> int:
    """Assign the oldest queued jobs of a model while workers have room; how many were assigned."""
    assigned = 0
    while assigned < limit:
        with transaction.atomic():
            job = (
                Job.objects.select_for_update(skip_locked=True)
                .filter(model_id=model_id, status=Job.Status.QUEUED)
                .order_by("created_at")
                .first()
            )
            if job is None or not _assign(job):
                return assigned
        assigned += 1
    return assigned


def dispatch_job_on_commit(job_id: str | uuid.UUID) -> None:
    from inference.tasks import dispatch_job_task

    job_id = str(job_id)
    transaction.on_commit(lambda: dispatch_job_task.delay(job_id))


def _dispatch_queued_on_commit(model_id: str) -> None:
    from inference.tasks import dispatch_queued_task

    transaction.on_commit(lambda: dispatch_queued_task.delay(model_id))


def dispatch_next_on_commit(model_id: str) -> None:
    """A slot of `model_id` freed up: after commit, dispatch its queued jobs (if there are any)."""
    if Job.objects.filter(model_id=model_id, status=Job.Status.QUEUED).exists():
        _dispatch_queued_on_commit(model_id)
