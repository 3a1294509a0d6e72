"""A chat request's job opened in one statement (PostgreSQL): the best free worker's slot claimed, the
job inserted assigned to it and the worst case held, as one implicit transaction whose commit does not
wait for the disk (sogni_platform.durability). One round trip instead of five (BEGIN, SET, claim and
insert, hold, COMMIT), each of which waits for the server's GIL again under load.

Only the common case: a worker nobody else is claiming has a free slot, and the first wallet the job
would pay from covers it. Anything else writes nothing, and the caller opens the job in a transaction
as before (the job queued, waiting for a claim, the next wallet, a 402's message). Rows are locked
worker → wallet, as everywhere.
"""

from django.db import DatabaseError, connection
from django.utils import timezone

from billing.services import HOLD_WRITTEN, hold_covered, hold_ctes, hold_rows_written, job_hold_first_choice
from inference.models import Job, LlmModel
from inference.services.dispatch import (
    JOB_INSERTED,
    job_assigned,
    job_insert_claiming_ctes,
    job_inserted_claiming,
)

# sogni_abort's SQLSTATE (migration inference 0007).
ABORTED = "SG001"


def job_open_at_once(job: Job, *, model: LlmModel, token_type: str) -> bool:
    """Write the new `job` (job_new's) assigned to a free worker slot, with its hold, in one statement;
    the worker is told at once. `token_type`: the job's, or for a job that names none the account's
    default as the caller last read it (the statement checks it). False: nothing was written."""
    if connection.vendor != "postgresql" or connection.in_atomic_block:
        return False
    wallet_type, hold, entry = job_hold_first_choice(job_id=str(job.id), model=model,
                                                     prompt_tokens=job.prompt_tokens_estimate,
                                                     max_tokens=job.max_tokens, token_type=token_type)  # fmt: skip
    now = timezone.now()
    # No slot is claimed for a job its first wallet cannot cover: nothing to undo then.
    covered = hold_covered(user_id=job.user_id, token_type=wallet_type, hold=hold)
    job_sql, job_params = job_insert_claiming_ctes(job, now, claimed_only=True, claim_if=covered,
                                                   token_type_is=token_type)  # fmt: skip
    hold_sql, hold_params = hold_ctes(user_id=job.user_id, token_type=wallet_type, hold=hold, entry=entry,
                                      condition=" AND EXISTS (SELECT 1 FROM j)")  # fmt: skip
    sql = (
        f"WITH {job_sql}, {hold_sql} SELECT {JOB_INSERTED}, {HOLD_WRITTEN}, "  # noqa: S608 - built from model meta
        "set_config('synchronous_commit', 'off', true), "
        # A slot claimed, then no job (another default token type) or no hold (the wallet was drawn on meanwhile).
        f"CASE WHEN EXISTS (SELECT 1 FROM c) AND NOT EXISTS (SELECT 1 FROM e) THEN sogni_abort('{ABORTED}') END "
        "FROM (SELECT 1) AS one LEFT JOIN j ON true LEFT JOIN e ON true"
    )
    try:
        with connection.cursor() as cursor:
            cursor.execute(sql, [*job_params, *hold_params])
            row = cursor.fetchone()
    except DatabaseError as error:
        if getattr(error.__cause__, "sqlstate", None) == ABORTED:
            return False
        raise
    if row[0] is None:
        return False
    picked = job_inserted_claiming(job, row[:3])
    hold_rows_written(user_id=job.user_id, token_type=wallet_type, hold=hold, entry=entry, row=row[3:8])
    job_assigned(job, picked, now)  # outside a transaction its message goes to the worker now
    return True
