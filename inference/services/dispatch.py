"""Dispatch: give a queued job to an online worker with a free slot, least loaded first.

Never sleeps (it may wait for a concurrent slot claim to commit): a job that finds no worker stays
queued; a slot freeing up (a job ending, a worker connecting) dispatches the oldest queued jobs of
that model. The chat view dispatches its new job itself; Celery dispatches the queued ones.
"""

import functools
import logging
import uuid
from datetime import timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone

from accounts.models import TokenTypePreference, User
from inference.models import Job, Worker
from inference.protocol import JOB_FEATURES
from inference.relay import WORKER_JOB_ASSIGN, send_on_commit
from inference.selectors import WORKER_ELIGIBLE_SQL, worker_eligible_params
from sogni_platform.rows import insert, insert_select, update

logger = logging.getLogger(__name__)


_ORDER_BY = (
    "ORDER BY CASE WHEN w.flagged_reason = '' THEN 0 ELSE 1 END, "
    "((w.jobs_failed + w.jobs_aborted) * 10) / (w.jobs_completed + w.jobs_failed + w.jobs_aborted + 1), w.in_flight, "
    "(w.tokens_generated * 1000) / (w.generation_ms_total + 1) DESC, w.slots DESC, "
    "w.last_assigned_at ASC NULLS FIRST, w.id LIMIT 1"
)


@functools.cache
def _pick_sql(*, columns: str, lock: str) -> str:
    """Healthy and fast first: unflagged, then the failure rate in tenths, then load, then measured
    speed, most slots, longest idle. Raw SQL: building this query with the ORM cost ~5 ms of CPU a
    request here. Parameters: _pick_params's."""
    worker, served = Worker._meta.db_table, Worker.served_models.through._meta.db_table
    return (
        f"SELECT {columns} FROM {worker} w JOIN {served} m ON m.worker_id = w.id "  # noqa: S608 - names from model meta
        f"WHERE m.llmmodel_id = %s AND w.in_flight < w.slots AND {WORKER_ELIGIBLE_SQL} {_FEATURES_SQL} "
        f"{_ORDER_BY}{lock}"
    )


@functools.cache
def _claim_free_sql(returning: str = "id, channel_name", condition: str = "") -> str:
    """Take a slot of the best worker nobody is claiming right now, in one statement. SKIP LOCKED never
    waits, so the statement holds no lock but the claimed row's. Parameters: now, then _pick_sql's, then
    `condition`'s (SQL ANDed to the WHERE)."""
    worker = Worker._meta.db_table
    pick = _pick_sql(columns="w.id", lock=" FOR UPDATE OF w SKIP LOCKED")
    return (
        f"UPDATE {worker} SET in_flight = in_flight + 1, last_assigned_at = %s "  # noqa: S608 - names from model meta
        f"WHERE id = ({pick}){condition} RETURNING {returning}"
    )


# A job that needs a worker feature (protocol hello.features: a raw prompt, log probabilities) goes only
# to a worker that announced it: one LIKE per known feature, '%' when the job does not need it.
_FEATURES_SQL = "".join(" AND w.features LIKE %s" for _ in JOB_FEATURES)


def job_features(request: dict) -> tuple[str, ...]:
    """The worker features a job's request needs."""
    needs = {"prompt": "prompt" in request, "logprobs": bool(request.get("logprobs"))}
    return tuple(feature for feature in JOB_FEATURES if needs[feature])


def _pick_params(model_id: str, now, needs: tuple[str, ...] = ()) -> list:
    return [model_id, *worker_eligible_params(now), *(f"% {f} %" if f in needs else "%" for f in JOB_FEATURES)]


def _claim_free(model_id: str, now, needs: tuple[str, ...] = ()) -> tuple[int, str] | None:
    if not connection.features.has_select_for_update_skip_locked:
        return None
    with connection.cursor() as cursor:
        now_param = connection.ops.adapt_datetimefield_value(now)
        cursor.execute(_claim_free_sql(), [now_param, *_pick_params(model_id, now, needs)])
        return cursor.fetchone()


def _pick_worker(model_id: str, now, needs: tuple[str, ...] = ()) -> tuple[int, str] | None:
    """The best worker with a free slot as of now; nothing is locked."""
    with connection.cursor() as cursor:
        cursor.execute(_pick_sql(columns="w.id, w.channel_name", lock=""), _pick_params(model_id, now, needs))
        return cursor.fetchone()


def _fill_slot(worker_id: int, channel_name: str, now) -> bool:
    """Take one slot of the worker if it still has one; waits for a concurrent claim to commit."""
    return bool(
        Worker.objects.filter(
            pk=worker_id, status=Worker.Status.ONLINE, channel_name=channel_name, in_flight__lt=F("slots")
        ).update(in_flight=F("in_flight") + 1, last_assigned_at=now)
    )


def _claim_slot(model_id: str, now, *, free_first: bool = True, needs: tuple[str, ...] = ()) -> tuple[int, str] | None:
    """Inside a transaction: take a slot of the best worker for the model (with the features a job
    `needs`); None if none has room. `free_first=False`: the caller's own statement just found no free
    worker nobody was claiming."""
    claimed = _claim_free(model_id, now, needs) if free_first else None  # the common case: a free worker nobody claims
    if claimed is not None:
        return claimed
    # Every free worker is being claimed by someone else (or none is free): wait for the best one's
    # pending claim. A statement that waits for a locked row keeps the locks of rows it rechecked and
    # passed over, so each attempt runs in a savepoint whose rollback drops them: a dispatch never
    # waits for a worker row while holding another. Each lost race means a slot filled.
    while True:
        savepoint = transaction.savepoint()
        picked = _pick_worker(model_id, now, needs)
        if picked is not None and _fill_slot(*picked, now):
            transaction.savepoint_commit(savepoint)
            return picked
        transaction.savepoint_rollback(savepoint)
        if picked is None:
            return None


def _lease_end(assigned_at):
    return assigned_at + timedelta(seconds=settings.JOB_LEASE_SECONDS)


def job_take_slot(job: Job) -> bool:
    """Inside a transaction: claim a worker slot for the job and set it assigned (not saved); it goes to
    the worker after commit. The job must be row-locked by the caller, or not yet inserted (nobody else
    can see it); for a new job that gets no slot the caller dispatches it after commit."""
    now = timezone.now()
    picked = _claim_slot(job.model_id, now, needs=job_features(job.request))
    if picked is None:
        return False
    job_assigned(job, picked, now)
    return True


def job_assigned(job: Job, picked: tuple[int, str], now) -> None:
    """Set the job assigned to the slot `picked` claimed at `now`; it goes to the worker after commit (at
    once outside a transaction)."""
    job.status = Job.Status.ASSIGNED
    job.worker_id, job.worker_channel = picked
    job.assigned_at = now
    job.lease_expires_at = _lease_end(now)
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


_ASSIGNED_FIELDS = ["status", "worker", "worker_channel", "assigned_at", "lease_expires_at", "attempts"]


def job_token_type_default(job: Job) -> None:
    """A job that names no token type pays as its account's default says, as of now."""
    if job.token_type is None:
        default = User.objects.filter(pk=job.user_id).values_list("default_token_type", flat=True).first()
        job.token_type = default or TokenTypePreference.AUTO


def job_insert_assigned(job: Job) -> bool:
    """Inside a transaction: insert the new job, assigned to a worker slot claimed for it if any is free
    (True); it goes to the worker after commit. On PostgreSQL the claim of a free worker nobody else is
    claiming and the insert are one statement, which also reads the account's default token type for a
    job that names none; only when every free worker is being claimed does the job, inserted queued,
    wait for the best one's claim as job_take_slot does."""
    if connection.vendor != "postgresql":
        job_token_type_default(job)
        assigned = job_take_slot(job)
        insert(job)
        return assigned
    now = timezone.now()
    picked = _insert_claiming(job, now)
    if picked is None:
        now = timezone.now()
        picked = _claim_slot(job.model_id, now, free_first=False, needs=job_features(job.request))
        if picked is None:
            return False
        job_assigned(job, picked, now)
        update(job, _ASSIGNED_FIELDS)
        return True
    job_assigned(job, picked, now)
    return True


def _insert_claiming(job: Job, now) -> tuple[int, str] | None:
    """INSERT the job (queued as it stands) from a CTE that claims a free slot; with a slot claimed the
    row goes in assigned to it. The claimed worker, or None."""
    ctes, params = job_insert_claiming_ctes(job, now)
    with connection.cursor() as cursor:
        cursor.execute(f"WITH {ctes} SELECT {JOB_INSERTED} FROM j", params)  # noqa: S608 - built from model meta
        row = cursor.fetchone()
    return job_inserted_claiming(job, row)


_INSERTED = ("worker_id", "worker_channel", "token_type")
# What a statement with job_insert_claiming_ctes selects for job_inserted_claiming.
JOB_INSERTED = ", ".join(f"j.{column}" for column in _INSERTED)


def job_insert_claiming_ctes(
    job: Job,
    now,
    *,
    claimed_only: bool = False,
    claim_if: tuple[str, list] = ("", []),
    token_type_is: str | None = None,
) -> tuple[str, list]:
    """A new job's insert as common table expressions for one PostgreSQL statement: `c` claims a slot of
    the best free worker nobody else is claiming (`claim_if`: SQL and parameters ANDed to its WHERE), `u`
    reads the account's default token type (for a job that names none), `j` inserts the job, assigned
    to the claimed slot or else queued — or, `claimed_only`, not at all; `token_type_is`: only if its
    token type comes out as that. Select JOB_INSERTED FROM j for job_inserted_claiming."""
    adapt = connection.ops.adapt_datetimefield_value
    condition, condition_params = claim_if
    claim = _claim_free_sql(
        returning="id, channel_name, CAST(%s AS timestamptz) AS assigned_at, CAST(%s AS timestamptz) AS lease_end",
        condition=condition,
    )
    account = f"SELECT NULLIF(default_token_type, '') AS token_type FROM {User._meta.db_table} WHERE id = %s"  # noqa: S608 - name from model meta
    token_type = f"COALESCE({{}}, u.token_type, '{TokenTypePreference.AUTO}')"
    source = "c CROSS JOIN u" if claimed_only else "(SELECT 1) AS one LEFT JOIN c ON true LEFT JOIN u ON true"
    source_params = []
    if token_type_is is not None:
        source += f" WHERE {token_type.replace('{}', '%s')} = %s"
        source_params = [job.token_type, token_type_is]
    insert_sql, insert_params = insert_select(
        job,
        source=source,
        columns={
            "token_type": token_type,
            "worker_id": "c.id",
            "worker_channel": "COALESCE(c.channel_name, {})",
            "status": f"CASE WHEN c.id IS NULL THEN {{}} ELSE '{Job.Status.ASSIGNED}' END",
            "assigned_at": "c.assigned_at",
            "lease_expires_at": "c.lease_end",
            "attempts": "{} + CASE WHEN c.id IS NULL THEN 0 ELSE 1 END",
        },
    )
    pick_params = _pick_params(job.model_id, now, job_features(job.request))
    params = [adapt(now), *pick_params, *condition_params, adapt(now), adapt(_lease_end(now)),
              job.user_id, *insert_params, *source_params]  # fmt: skip
    return f"c AS ({claim}), u AS ({account}), j AS ({insert_sql} RETURNING {', '.join(_INSERTED)})", params


def job_inserted_claiming(job: Job, row) -> tuple[int, str] | None:
    """The job as the statement with job_insert_claiming_ctes wrote it (`row`: its JOB_INSERTED): the
    claimed worker, or None (inserted queued)."""
    worker_id, channel_name, job.token_type = row
    job._state.adding, job._state.db = False, connection.alias
    return None if worker_id is None else (worker_id, channel_name)


def _assign(job: Job) -> bool:
    """Inside a transaction holding the job's row lock: claim a worker slot for it."""
    if not job_take_slot(job):
        return False
    job.save(update_fields=_ASSIGNED_FIELDS)
    return True


def job_dispatch(*, job_id: str | uuid.UUID) -> bool:
    """Assign one queued job if a worker has room; True if it was assigned."""
    with transaction.atomic():
        job = Job.objects.select_for_update(skip_locked=True).filter(id=job_id, status=Job.Status.QUEUED).first()
        if job is None:
            return False
        return _assign(job)


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


@functools.cache
def _slot_free_sql() -> str:
    worker, job = Worker._meta.db_table, Job._meta.db_table
    return (
        f"UPDATE {worker} SET in_flight = in_flight - 1 WHERE id = %s AND channel_name = %s AND in_flight > 0 "  # noqa: S608 - names from model meta
        f"RETURNING EXISTS (SELECT 1 FROM {job} WHERE model_id = %s AND status = %s)"
    )


def worker_slot_free(*, worker_id: int, channel_name: str, model_id: str) -> None:
    """The worker connection `channel_name` gives back a slot of `model_id`'s job: after commit, the
    model's queued jobs are dispatched, if there are any. One statement for both."""
    with connection.cursor() as cursor:
        cursor.execute(_slot_free_sql(), [worker_id, channel_name, model_id, Job.Status.QUEUED])
        row = cursor.fetchone()
    if row is not None and row[0]:
        _dispatch_queued_on_commit(model_id)
