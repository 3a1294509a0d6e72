"""A job's life after the request is accepted: create, run, and the one place it ends.

Every end of a job (completed, failed, cancelled, expired in the queue) goes through `_job_end`,
in the transaction that changes its status, and settles or releases the job's billing hold there.
"""

import functools
import logging
import uuid
from datetime import datetime, timedelta
from typing import NamedTuple

from django.conf import settings
from django.db import connection, transaction
from django.db.models import UUIDField
from django.utils import timezone

from billing.models import Hold
from billing.services import HoldNotFound, job_release, job_settle
from inference.counting import BOUNDED
from inference.errors import error_message
from inference.models import Job, LlmModel
from inference.relay import REPLY_DONE, REPLY_ERROR, REPLY_REQUEUED, send_on_commit
from inference.services.claims import job_counts
from inference.services.dispatch import (
    dispatch_job_on_commit,
    job_insert_assigned,
    job_token_type_default,
    worker_slot_free,
)
from inference.services.trust import job_outcome_record, worker_fault_record
from sogni_platform.prepared import PreparedGet, typed
from sogni_platform.rows import insert, update

logger = logging.getLogger(__name__)

JobId = str | uuid.UUID


class Relayed(NamedTuple):
    """What a worker connection relayed of a job: the tokens its deltas claimed and the completion text."""

    claimed_tokens: int
    output: str


def job_new(
    *,
    user,
    model: LlmModel,
    public_id: str,
    request: dict,
    stream: bool,
    max_tokens: int,
    prompt_tokens_estimate: int,
    token_type: str | None,
    reply_channel: str,
    token_counting: str = BOUNDED,
) -> Job:
    """A new job, not yet written (job_insert, or inference.services.opening for a chat request's).
    `token_type` None: the account's default as of the insert. `token_counting` EXACT: the estimate
    is the platform's count of the prompt."""
    return Job(
        user=user,
        model=model,
        public_id=public_id,
        request=request,
        stream=stream,
        max_tokens=max_tokens,
        prompt_tokens_estimate=prompt_tokens_estimate,
        token_type=token_type,
        reply_channel=reply_channel,
        token_counting=token_counting,
    )


def job_insert(job: Job, *, assign_now: bool = False) -> Job:
    """Write a new job, dispatched by Celery after commit; with `assign_now` it takes a free worker slot
    in the caller's transaction and is inserted already assigned (Celery only if none is free).
    Subscribe its reply channel before calling this."""
    if assign_now and not transaction.get_connection().in_atomic_block:
        raise RuntimeError("assign_now: the job must be created in the caller's transaction")
    if assign_now:
        assigned = job_insert_assigned(job)
    else:
        assigned = False
        job_token_type_default(job)
        insert(job)
    if not assigned:
        dispatch_job_on_commit(job.id)
    return job


def job_create(*, assign_now: bool = False, **fields) -> Job:
    """job_new's job, written by job_insert."""
    return job_insert(job_new(**fields), assign_now=assign_now)


def job_mark_running(*, job_id: JobId, channel_name: str, first_token_at: datetime) -> None:
    """The first token was relayed. Conditional, so a late write never undoes the job's end."""
    adapt = connection.ops.adapt_datetimefield_value  # raw SQL: times as the ORM stores them
    lease_expires_at = first_token_at + timedelta(seconds=settings.JOB_LEASE_SECONDS)
    with connection.cursor() as cursor:
        cursor.execute(_running_sql(), [Job.Status.RUNNING, adapt(first_token_at), adapt(lease_expires_at),
                                        _pk_text(job_id), channel_name, Job.Status.ASSIGNED])  # fmt: skip


@functools.cache
def _running_sql() -> str:
    """Raw: every request's first token runs it, in the server's process."""
    return (
        f"UPDATE {Job._meta.db_table} SET status = %s, first_token_at = %s, lease_expires_at = %s "  # noqa: S608 - the name is from model meta
        "WHERE id = %s AND worker_channel = %s AND status = %s"
    )


def _pk_text(job_id: JobId) -> str:
    """A job id as text every backend's uuid column compares with (SQLite keeps 32 hex digits)."""
    return uuid.UUID(str(job_id)).hex


def _jobs_locked():
    return Job.objects.select_for_update(of=("self",)).select_related("model", "worker")


# A worker connection's report about a job it holds: every done, error and requeue.
_HELD_BY = PreparedGet(
    lambda job_id, channel: _jobs_locked().filter(
        id=typed(job_id, UUIDField()), status__in=Job.ACTIVE, worker_channel=channel
    ),
    arity=2,
)


def _locked(job_id: JobId, *, channel_name: str | None, statuses) -> Job | None:
    if channel_name is not None and tuple(statuses) == Job.ACTIVE:
        return _HELD_BY.get(_pk_text(job_id), channel_name)
    jobs = _jobs_locked().filter(id=job_id, status__in=statuses)
    if channel_name is not None:
        jobs = jobs.filter(worker_channel=channel_name)
    return jobs.first()


def _free_slot(job: Job) -> None:
    """Only the connection the job was sent to counts it in `in_flight`."""
    if job.status in Job.ACTIVE and job.worker_id and job.worker_channel:
        worker_slot_free(worker_id=job.worker_id, channel_name=job.worker_channel, model_id=job.model_id)


def _job_end(job: Job, *, status: str, **fields) -> Hold | None:
    """The one place a job ends, in the caller's transaction: billing settles or releases its hold."""
    _free_slot(job)
    job.status = status
    job.finished_at = timezone.now()
    for name, value in fields.items():
        setattr(job, name, value)
    update(job, ["status", "finished_at", *fields])
    if job.claim_discrepancy:
        logger.warning("job %s: the worker's usage claims differ from the platform's counts", job.id)
        worker_fault_record(worker_id=job.worker_id, kind="discrepancy")
    # Billing last, so the customer's wallet (locked by each of their requests) stays locked only for
    # the postings. Rows are always locked job → worker → wallets, so this order cannot deadlock.
    return _job_bill(job)


def _job_bill(job: Job) -> Hold | None:
    """Settle the hold (billing's job_id is str(job.id)) for the tokens the client got, or release it.

    Completed: prompt + completion, the worker's owner earns its share. Cancelled by the client after
    tokens were delivered: the prompt (job_fail records the platform's count) and the delivered
    completion tokens, the owner earns its share. Failed after delivery (the worker broke off): the
    delivered completion tokens only, the owner earns nothing. Nothing delivered: the hold is
    released in full.
    """
    job_id = str(job.id)
    completion_tokens = min(job.completion_tokens, job.max_tokens)
    try:
        if job.status == Job.Status.COMPLETED or completion_tokens > 0:
            served = job.status in (Job.Status.COMPLETED, Job.Status.CANCELLED)
            earns = served and job.worker_id is not None
            return job_settle(
                job_id=job_id,
                prompt_tokens=job.prompt_tokens if served else 0,
                completion_tokens=completion_tokens,
                worker_owner_id=job.worker.owner_id if earns else None,
            )
        return job_release(job_id=job_id)
    except HoldNotFound:
        logger.warning("job %s ended without a hold: nothing to settle", job_id)
        return None


def _cost(hold: Hold | None) -> dict | None:
    """usage.cost of a settled hold, as exact decimal strings."""
    if hold is None:
        return None
    return {
        "token_type": hold.wallet.token_type,
        "amount": f"{hold.charged.normalize():f}",
        "usd": f"{hold.usd_charged.normalize():f}",
    }


def job_finish(
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
    """The worker connection holding the job reported `done`. None if it no longer holds it.

    The usage given is the worker's claim; the job is billed on the platform's counts of its prompt
    and of `output`, the completion text relayed (inference.services.claims).
    """
    with transaction.atomic():
        job = _locked(job_id, channel_name=channel_name, statuses=Job.ACTIVE)
        if job is None:
            return None
        counts = job_counts(job, output=output, claimed_completion=completion_tokens, claimed_prompt=prompt_tokens)
        hold = _job_end(
            job,
            status=Job.Status.COMPLETED,
            finish_reason=finish_reason,
            reasoning_tokens=min(reasoning_tokens, counts["completion_tokens"]),
            first_token_at=job.first_token_at or first_token_at,
            **counts,
        )
        send_on_commit(job.reply_channel, job_done_message(job, hold=hold))
    return job


def job_done_message(job: Job, *, hold: Hold | None) -> dict:
    """The reply-channel message of a completed job, with its usage and what its hold charged."""
    usage = {
        "prompt_tokens": job.prompt_tokens,
        "completion_tokens": job.completion_tokens,
        "total_tokens": job.prompt_tokens + job.completion_tokens,
        "reasoning_tokens": job.reasoning_tokens,
    }
    return {"type": REPLY_DONE, "finish_reason": job.finish_reason, "usage": usage, "cost": _cost(hold)}


def job_complete(**finish) -> Job | None:
    """job_finish, then the job counts towards its worker's statistics."""
    ended = job_finish(**finish)
    job_outcome_record(job=ended)
    return ended


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
        job = _locked(job_id, channel_name=channel_name, statuses=statuses)
        if job is None:
            return None
        counts = job_counts(job, output=output, claimed_completion=completion_tokens)
        client_left_after_tokens = status == Job.Status.CANCELLED and counts["completion_tokens"] > 0
        _job_end(
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
        job = _locked(job_id, channel_name=channel_name, statuses=Job.ACTIVE)
        if job is None:
            return None
        return _requeue(job, reason=reason)


def _requeue(job: Job, *, reason: str) -> Job:
    """`reason` is the platform's words (a worker's own text never reaches the customer)."""
    if job.attempts >= settings.JOB_MAX_ATTEMPTS:
        message = f"The job failed on {job.attempts} workers; the last one: {reason}"
        _job_end(job, status=Job.Status.FAILED, error_code="worker_error", error_message=message)
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
        job = _locked(job_id, channel_name=None, statuses=(Job.Status.QUEUED,))
        if job is None:
            return False
        _job_end(
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
        job = _locked(job_id, channel_name=None, statuses=(Job.Status.QUEUED, *Job.ACTIVE))
        if job is None:
            return None
        if job.status == Job.Status.QUEUED:
            _job_end(job, status=Job.Status.CANCELLED, error_code="cancelled", error_message="The client went away.")
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
                counts = {} if relayed is None else job_counts(job, output=relayed.output,
                                                                 claimed_completion=relayed.claimed_tokens)  # fmt: skip
                _job_end(
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
                _requeue(job, reason="the worker disconnected before the first token")
            released += 1
    return released
