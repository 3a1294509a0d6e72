"""Dispatch: give a queued job to an online worker with a free slot, least loaded first.

Never sleeps (it may wait for a concurrent slot claim to commit): a job that finds no worker stays
queued; a slot freeing up (a job ending, a worker connecting) dispatches the oldest queued jobs of
that model. A new job claims its slot as it opens (inference.services.opening, with
worker_slot_claim); Celery dispatches the queued ones.
"""

import logging
import uuid
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone

from inference.models import Job, Worker
from inference.protocol import JOB_FEATURES
from inference.relay import WORKER_JOB_ASSIGN, send_on_commit
from inference.selectors import WORKER_ELIGIBLE_SQL, worker_eligible_params

logger = logging.getLogger(__name__)


# A job that needs a worker feature (protocol hello.features: a raw prompt, log probabilities) goes only
# to a worker that announced it: one LIKE per known feature, '%' when the job does not need it.
_FEATURES_SQL = "".join(" AND w.features LIKE %s" for _ in JOB_FEATURES)

# The best eligible worker with a free slot for a model (with the features a job needs): healthy and
# fast first — unflagged, then the failure rate in tenths, then load, then measured speed, most slots,
# longest idle. Raw SQL: building this query with the ORM cost ~5 ms of CPU a request. Parameters:
# worker_pick_params.
WORKER_PICK_SQL = (
    "SELECT w.id, w.channel_name FROM inference_worker w "  # noqa: S608 - composed of constants
    "JOIN inference_worker_served_models m ON m.worker_id = w.id "
    f"WHERE m.llmmodel_id = %s AND w.in_flight < w.slots AND {WORKER_ELIGIBLE_SQL}{_FEATURES_SQL} "
    "ORDER BY CASE WHEN w.flagged_reason = '' THEN 0 ELSE 1 END, "
    "((w.jobs_failed + w.jobs_aborted) * 10) / (w.jobs_completed + w.jobs_failed + w.jobs_aborted + 1), w.in_flight, "
    "(w.tokens_generated * 1000) / (w.generation_ms_total + 1) DESC, w.slots DESC, "
    "w.last_assigned_at ASC NULLS FIRST, w.id LIMIT 1"
)

# Take a slot of the best worker nobody is claiming right now, in one statement. SKIP LOCKED never
# waits, so the statement holds no lock but the claimed row's. Parameters: now, WORKER_PICK_SQL's.
SLOT_CLAIM_FREE_SQL = (
    "UPDATE inference_worker SET in_flight = in_flight + 1, last_assigned_at = %s "  # noqa: S608 - composed of constants
    f"WHERE id = (SELECT id FROM ({WORKER_PICK_SQL} FOR UPDATE OF w SKIP LOCKED) AS picked) "
    "RETURNING id, channel_name"
)

# The slot of a worker connection given back; whether its model has queued jobs to dispatch.
# Parameters: worker id, channel name, model id, the queued status.
SLOT_FREE_SQL = (
    "UPDATE inference_worker SET in_flight = in_flight - 1 WHERE id = %s AND channel_name = %s AND in_flight > 0 "
    "RETURNING EXISTS (SELECT 1 FROM inference_job WHERE model_id = %s AND status = %s)"
)


def job_features(request: dict) -> tuple[str, ...]:
    """The worker features a job's request needs."""
    needs = {"prompt": "prompt" in request, "logprobs": bool(request.get("logprobs"))}
    return tuple(feature for feature in JOB_FEATURES if needs[feature])


def worker_pick_params(model_id: str, now: datetime, needs: tuple[str, ...] = ()) -> list:
    """WORKER_PICK_SQL's parameters for a job that `needs` these features."""
    features = (f"% {feature} %" if feature in needs else "%" for feature in JOB_FEATURES)
    return [model_id, *worker_eligible_params(now), *features]


def _slot_claim_free(model_id: str, now: datetime, needs: tuple[str, ...]) -> tuple[int, str] | None:
    if not connection.features.has_select_for_update_skip_locked:
        return None
    with connection.cursor() as cursor:
        adapt = connection.ops.adapt_datetimefield_value
        cursor.execute(SLOT_CLAIM_FREE_SQL, [adapt(now), *worker_pick_params(model_id, now, needs)])
        return cursor.fetchone()


def _worker_pick(model_id: str, now: datetime, needs: tuple[str, ...]) -> tuple[int, str] | None:
    """The best worker with a free slot as of now; nothing is locked."""
    with connection.cursor() as cursor:
        cursor.execute(WORKER_PICK_SQL, worker_pick_params(model_id, now, needs))
        return cursor.fetchone()


def _slot_fill(worker_id: int, channel_name: str, now: datetime) -> bool:
    """Take one slot of the worker if it still has one; waits for a concurrent claim to commit."""
    return bool(
        Worker.objects.filter(
            pk=worker_id, status=Worker.Status.ONLINE, channel_name=channel_name, in_flight__lt=F("slots")
        ).update(in_flight=F("in_flight") + 1, last_assigned_at=now)
    )


def worker_slot_claim(*, model_id: str, now: datetime, needs: tuple[str, ...] = ()) -> tuple[int, str] | None:
    """Inside a transaction: take a slot of the best worker for the model with the features a job
    `needs`; (worker id, channel name), or None if none has room."""
    claimed = _slot_claim_free(model_id, now, needs)  # the common case: a free worker nobody claims
    if claimed is not None:
        return claimed
    # Every free worker is being claimed by someone else (or none is free): wait for the best one's
    # pending claim. A statement that waits for a locked row keeps the locks of rows it rechecked and
    # passed over, so each attempt runs in a savepoint whose rollback drops them: a dispatch never
    # waits for a worker row while holding another. Each lost race means a slot filled.
    while True:
        savepoint = transaction.savepoint()
        picked = _worker_pick(model_id, now, needs)
        if picked is not None and _slot_fill(*picked, now):
            transaction.savepoint_commit(savepoint)
            return picked
        transaction.savepoint_rollback(savepoint)
        if picked is None:
            return None


def job_lease_end(assigned_at: datetime) -> datetime:
    return assigned_at + timedelta(seconds=settings.JOB_LEASE_SECONDS)


def job_assign(job: Job, *, worker: tuple[int, str], now: datetime) -> None:
    """Set the job assigned to the slot of `worker` (id, channel name) claimed at `now` (not saved); it
    goes to the worker after commit (at once outside a transaction)."""
    job.status = Job.Status.ASSIGNED
    job.worker_id, job.worker_channel = worker
    job.assigned_at = now
    job.lease_expires_at = job_lease_end(now)
    job.attempts += 1
    send_on_commit(
        job.worker_channel,
        {
            "type": WORKER_JOB_ASSIGN,
            "job_id": str(job.id),
            "model": job.model_id,
            "request": job.request,
            "reply_channel": job.reply_channel,
            "max_tokens": job.max_tokens,
        },
    )


def _dispatch(job: Job) -> bool:
    """Inside a transaction holding the queued job's row lock: claim a worker slot for it."""
    now = timezone.now()
    worker = worker_slot_claim(model_id=job.model_id, now=now, needs=job_features(job.request))
    if worker is None:
        return False
    job_assign(job, worker=worker, now=now)
    job.save(update_fields=["status", "worker", "worker_channel", "assigned_at", "lease_expires_at", "attempts"])
    return True


def job_dispatch(*, job_id: str | uuid.UUID) -> bool:
    """Assign one queued job if a worker has room; True if it was assigned."""
    with transaction.atomic():
        job = Job.objects.select_for_update(skip_locked=True).filter(id=job_id, status=Job.Status.QUEUED).first()
        if job is None:
            return False
        return _dispatch(job)


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
            if job is None or not _dispatch(job):
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


def worker_slot_free(*, worker_id: int, channel_name: str, model_id: str) -> None:
    """The worker connection `channel_name` gives back a slot of `model_id`'s job: after commit, the
    model's queued jobs are dispatched, if there are any. One statement for both."""
    with connection.cursor() as cursor:
        cursor.execute(SLOT_FREE_SQL, [worker_id, channel_name, model_id, Job.Status.QUEUED])
        row = cursor.fetchone()
    if row is not None and row[0]:
        _dispatch_queued_on_commit(model_id)
