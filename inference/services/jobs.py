"""A job's life after its opening (inference.services.opening): run, and the one place it ends.

Every end of a job (completed, failed, cancelled, expired in the queue) goes through `job_end`, in
the transaction that changes its status, which settles or releases the job's hold there
(inference.services.settlement).
"""

import logging
import uuid
from datetime import datetime, timedelta
from typing import NamedTuple

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from billing.models import Hold
from inference.errors import error_message
from inference.models import Job
from inference.relay import REPLY_ERROR, REPLY_REQUEUED, send_on_commit
from inference.services.claims import job_counts
from inference.services.dispatch import dispatch_job_on_commit, worker_slot_free
from inference.services.settlement import job_done_message, job_settle
from inference.services.trust import job_outcome_record, worker_fault_record

logger = logging.getLogger(__name__)

JobId = str | uuid.UUID


class Relayed(NamedTuple):
    """What a worker connection relayed of a job: the tokens its deltas claimed and the completion text."""

    claimed_tokens: int
    output: str


# The first token: a conditional write, so a late one never undoes the job's end. Raw: every request's
# first token runs it. Parameters: running, first token at, lease end, job id, worker channel, assigned.
JOB_RUNNING_SQL = (
    "UPDATE inference_job SET status = %s, first_token_at = %s, lease_expires_at = %s "
    "WHERE id = %s AND worker_channel = %s AND status = %s"
)


def job_mark_running(*, job_id: JobId, channel_name: str, first_token_at: datetime) -> None:
    """The first token was relayed."""
    adapt = connection.ops.adapt_datetimefield_value  # raw SQL: times as the ORM stores them
    lease_expires_at = first_token_at + timedelta(seconds=settings.JOB_LEASE_SECONDS)
    params = [Job.Status.RUNNING, adapt(first_token_at), adapt(lease_expires_at), _pk_text(job_id), channel_name]
    with connection.cursor() as cursor:
        cursor.execute(JOB_RUNNING_SQL, [*params, Job.Status.ASSIGNED])


def _pk_text(job_id: JobId) -> str:
    """A job id as text every backend's uuid column compares with (SQLite keeps 32 hex digits)."""
    return uuid.UUID(str(job_id)).hex


def job_locked(job_id: JobId, *, channel_name: str | None, statuses) -> Job | None:
    """The job, row-locked to the commit, if its status is one of `statuses` (and, with
    `channel_name`, while that worker connection holds it)."""
    jobs = Job.objects.select_for_update(of=("self",)).select_related("model", "worker")
    jobs = jobs.filter(id=job_id, status__in=statuses)
    if channel_name is not None:
        jobs = jobs.filter(worker_channel=channel_name)
    return jobs.first()


def _free_slot(job: Job) -> None:
    """Only the connection the job was sent to counts it in `in_flight`."""
    if job.status in Job.ACTIVE and job.worker_id and job.worker_channel:
        worker_slot_free(worker_id=job.worker_id, channel_name=job.worker_channel, model_id=job.model_id)


def job_end(job: Job, *, status: str, **fields) -> Hold | None:
    """The one place a job ends, in the caller's transaction holding its row lock: its slot freed, its
    status and `fields` written, its hold settled or released (inference.services.settlement)."""
    _free_slot(job)
    job.status = status
    job.finished_at = timezone.now()
    for name, value in fields.items():
        setattr(job, name, value)
    job.save(update_fields=["status", "finished_at", *fields])
    if job.claim_discrepancy:
        logger.warning("job %s: the worker's usage claims differ from the platform's counts", job.id)
        worker_fault_record(worker_id=job.worker_id, kind="discrepancy")
    # Billing last, so the customer's wallet (locked by each of their requests) stays locked only for
    # the postings. Rows are always locked job → worker → wallets, so this order cannot deadlock.
    return job_settle(job)


def job_complete(
    *,
    job_id: JobId,
    channel_name: str,
    finish_reason: str,
    prompt_tokens: int,
    completion_tokens: int,
    reasoning_tokens: int,
    output: str = "",
    first_token_at: datetime | None = None,
) -> Job | None:
    """The worker connection holding the job reported `done`: the job completes, its hold is settled
    and it counts towards its worker's statistics. None if the connection no longer holds it.

    The usage given is the worker's claim; the job is billed on the platform's counts of its prompt
    and of `output`, the completion text relayed (inference.services.claims).
    """
    with transaction.atomic():
        job = job_locked(job_id, channel_name=channel_name, statuses=Job.ACTIVE)
        if job is None:
            return None
        counts = job_counts(job, output=output, claimed_completion=completion_tokens, claimed_prompt=prompt_tokens)
        hold = job_end(
            job,
            status=Job.Status.COMPLETED,
            finish_reason=finish_reason,
            reasoning_tokens=min(reasoning_tokens, counts["completion_tokens"]),
            first_token_at=job.first_token_at or first_token_at,
            **counts,
        )
        send_on_commit(job.reply_channel, job_done_message(job, hold=hold))
    job_outcome_record(job=job)
    return job


def job_fail(
    *,
    job_id: JobId,
    code: str,
    message: str | None = None,
    worker_message: str = "",
    channel_name: str | None = None,
    status: str = Job.Status.FAILED,
    completion_tokens: int | None = None,
    output: str = "",
    first_token_at: datetime | None = None,
    notify: bool = True,
) -> Job | None:
    """End a job that has not finished, with an error the waiting request reports.

    `message` is the platform's (by default its words for `code`); what a worker said goes in
    `worker_message`, kept for operators and never sent to the customer. With `channel_name`, only while
    that worker connection holds the job. `output` is the completion text already delivered to the
    client (billed on the platform's count), `completion_tokens` what the worker claimed for it.
    Cancelled (the client left) after the first token, the prompt is billed at the platform's count of it.
    """
    message = message or error_message(code)
    with transaction.atomic():
        statuses = Job.ACTIVE if channel_name else (Job.Status.QUEUED, *Job.ACTIVE)
        job = job_locked(job_id, channel_name=channel_name, statuses=statuses)
        if job is None:
            return None
        counts = job_counts(job, output=output, claimed_completion=completion_tokens)
        client_left_after_tokens = status == Job.Status.CANCELLED and counts["completion_tokens"] > 0
        job_end(
            job,
            status=status,
            error_code=code,
            error_message=message[:2000],
            worker_message=worker_message[:4096],
            first_token_at=job.first_token_at or first_token_at,
            prompt_tokens=job.prompt_tokens_estimate if client_left_after_tokens else 0,
            **counts,
        )
        if notify:
            send_on_commit(job.reply_channel, {"type": REPLY_ERROR, "code": code, "message": message})
    return job


def job_requeue(*, job_id: JobId, channel_name: str, reason: str) -> Job | None:
    """Put a job that produced nothing back in the queue for another worker (or fail it after
    JOB_MAX_ATTEMPTS tries)."""
    with transaction.atomic():
        job = job_locked(job_id, channel_name=channel_name, statuses=Job.ACTIVE)
        if job is None:
            return None
        return job_requeue_locked(job, reason=reason)


def job_requeue_locked(job: Job, *, reason: str) -> Job:
    """job_requeue for a job the caller holds locked. `reason` is the platform's words (a worker's own
    text never reaches the customer)."""
    if job.attempts >= settings.JOB_MAX_ATTEMPTS:
        message = f"The job failed on {job.attempts} workers; the last one: {reason}"
        job_end(job, status=Job.Status.FAILED, error_code="worker_error", error_message=message)
        send_on_commit(job.reply_channel, {"type": REPLY_ERROR, "code": "worker_error", "message": message})
        return job
    _free_slot(job)
    job.status = Job.Status.QUEUED
    job.worker = None
    job.worker_channel = ""
    job.assigned_at = None
    job.queued_at = timezone.now()
    job.save(update_fields=["status", "worker", "worker_channel", "assigned_at", "queued_at"])
    logger.info("job %s requeued (attempt %s): %s", job.id, job.attempts, reason)
    send_on_commit(job.reply_channel, {"type": REPLY_REQUEUED})
    dispatch_job_on_commit(job.id)
    return job


def job_expire(*, job_id: JobId, notify: bool = False) -> bool:
    """Queue timeout: fail the job if it is still queued; False if a worker took it meanwhile."""
    with transaction.atomic():
        job = job_locked(job_id, channel_name=None, statuses=(Job.Status.QUEUED,))
        if job is None:
            return False
        job_end(
            job,
            status=Job.Status.FAILED,
            error_code="no_worker_available",
            error_message="No worker became available within the queue timeout.",
        )
        if notify:
            send_on_commit(
                job.reply_channel, {"type": REPLY_ERROR, "code": job.error_code, "message": job.error_message}
            )
    return True


def jobs_expire_abandoned() -> int:
    """Queued jobs whose waiting request is gone (its server died) and would never be expired by it."""
    cutoff = timezone.now() - timedelta(seconds=2 * settings.JOB_QUEUE_TIMEOUT)
    stale = Job.objects.filter(status=Job.Status.QUEUED, queued_at__lt=cutoff).values_list("id", flat=True)
    return sum(job_expire(job_id=job_id, notify=True) for job_id in stale[:1000])


def job_cancel(*, job_id: JobId) -> str | None:
    """The client went away. A queued job is cancelled at once; for a running one this returns the
    worker channel to send `job.cancel` to (the worker's `cancelled` error then ends the job)."""
    with transaction.atomic():
        job = job_locked(job_id, channel_name=None, statuses=(Job.Status.QUEUED, *Job.ACTIVE))
        if job is None:
            return None
        if job.status == Job.Status.QUEUED:
            job_end(job, status=Job.Status.CANCELLED, error_code="cancelled", error_message="The client went away.")
            return None
        return job.worker_channel


def release_connection_jobs(*, channel_name: str, delivered: dict[str, Relayed] | None) -> int:
    """A worker connection is gone: jobs that produced no token go back to the queue, jobs that
    streamed fail. `delivered` maps job ids to what was relayed (None: not known, use the job status
    and the delivered count the connection last saved)."""
    delivered = delivered or {}
    released = 0
    with transaction.atomic():
        jobs = Job.objects.select_for_update().filter(worker_channel=channel_name, status__in=Job.ACTIVE)
        for job in jobs:
            job_key = str(job.id)
            if job_key in delivered or job.status == Job.Status.RUNNING:
                message = "The worker serving this request disconnected after it had started answering."
                relayed = delivered.get(job_key)
                # Not known here (the connection's server process died): the count its progress saves left.
                counts = (
                    {}
                    if relayed is None
                    else job_counts(job, output=relayed.output, claimed_completion=relayed.claimed_tokens)
                )
                job_end(
                    job,
                    status=Job.Status.FAILED,
                    error_code="worker_disconnected",
                    error_message=message,
                    **counts,
                )
                send_on_commit(
                    job.reply_channel, {"type": REPLY_ERROR, "code": "worker_disconnected", "message": message}
                )
            else:
                job_requeue_locked(job, reason="the worker disconnected before the first token")
            released += 1
    return released
