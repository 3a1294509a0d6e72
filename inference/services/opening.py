"""Opening a job: between a chat request's arrival and its job being `assigned` or `queued` with its
hold taken, on both backends, under one name (`job_open`).

Two ways, side by side:

- One statement (PostgreSQL, outside a transaction; JOB_OPEN_SQL): the best free worker's slot nobody
  else is claiming, the job inserted assigned to it and the worst case held with its ledger entry, as
  one implicit transaction whose commit does not wait for the disk. One round trip instead of five
  (BEGIN, SET, claim and insert, hold, COMMIT), each of which waits for the server's GIL again under
  load. Only the common case: a free worker, and the first wallet the job would pay from (Spark for
  `auto`) covers the hold. Otherwise it writes nothing: a slot is claimed only if that wallet covers
  the hold, and if the hold then does not go in (the wallet was drawn on meanwhile, or the account's
  default token type is not what the caller read), the statement fails with `sogni_abort`.
- One transaction (anything else, and SQLite): a slot claimed (dispatch's worker_slot_claim, which may
  wait for a concurrent claim), the job inserted assigned or queued, then the hold on the first wallet
  that covers it (billing's hold_take), a 402 or 503 rolling it all back.

Rows are locked worker → wallet in both, as everywhere (docs/architecture.md, "Lock order").
"""

from django.db import DatabaseError, connection, transaction
from django.utils import timezone
from psycopg.types.json import Jsonb

from accounts.models import TokenTypePreference, User
from billing.services.holds import HoldTerms, hold_take, hold_terms
from inference.counting import BOUNDED
from inference.models import Job, LlmModel
from inference.selectors import model_has_online_worker
from inference.services.dispatch import (
    WORKER_PICK_SQL,
    dispatch_job_on_commit,
    job_assign,
    job_features,
    job_lease_end,
    worker_pick_params,
    worker_slot_claim,
)
from sogni_platform.durability import skip_commit_flush
from sogni_platform.exceptions import ServiceUnavailable

# How long a client told no worker is available should wait before it retries.
RETRY_AFTER_SECONDS = 5

# sogni_abort's SQLSTATE (migration inference 0007).
ABORTED = "SG001"

# The opening in one statement. `c` claims the slot (as dispatch's SLOT_CLAIM_FREE_SQL does, only while
# the first wallet covers the hold), `u` reads the account's default token type for a job that names none, `j` inserts
# the job assigned to the slot if its token type is the one the caller priced the hold for, `w` holds
# the amount on the wallet (locking it) and `h` and `e` write the hold and its ledger entry, as
# billing's HOLD_TAKE_SQL does. Parameters: see _open_in_one_statement.
JOB_OPEN_SQL = f"""
WITH c AS (
    UPDATE inference_worker SET in_flight = in_flight + 1, last_assigned_at = %s
    WHERE id = (SELECT id FROM ({WORKER_PICK_SQL} FOR UPDATE OF w SKIP LOCKED) AS picked)
      AND EXISTS (SELECT 1 FROM billing_wallet WHERE user_id = %s AND token_type = %s AND balance - held >= %s)
    RETURNING id, channel_name
), u AS (
    SELECT COALESCE(%s, NULLIF(default_token_type, ''), '{TokenTypePreference.AUTO}') AS token_type
    FROM accounts_user WHERE id = %s
), j AS (
    INSERT INTO inference_job (id, public_id, user_id, model_id, status, request, stream, max_tokens,
        prompt_tokens_estimate, token_type, reply_channel, worker_id, worker_channel, attempts, created_at, queued_at,
        assigned_at, first_token_at, lease_expires_at, finished_at, finish_reason, prompt_tokens, completion_tokens,
        reasoning_tokens, token_counting, claimed_prompt_tokens, claimed_completion_tokens, output_bytes,
        claim_discrepancy, error_code, error_message, worker_message)
    SELECT %s, %s, %s, %s, '{Job.Status.ASSIGNED}', %s, %s, %s,
        %s, u.token_type, %s, c.id, c.channel_name, 1, %s, %s,
        %s, NULL, %s, NULL, '', 0, 0,
        0, %s, NULL, NULL, 0,
        false, '', '', ''
    FROM c CROSS JOIN u WHERE u.token_type = %s
    RETURNING token_type
), w AS (
    UPDATE billing_wallet SET held = held + %s, updated_at = %s
    WHERE user_id = %s AND token_type = %s AND balance - held >= %s AND EXISTS (SELECT 1 FROM j)
    RETURNING id, balance, held
), h AS (
    INSERT INTO billing_hold (job_id, wallet_id, model_id, status, amount, usd_estimate, input_price_usd_per_m,
                              output_price_usd_per_m, usd_per_token, charged, usd_charged, prompt_tokens,
                              completion_tokens, worker_owner_id, reward, created_at, closed_at)
    SELECT %s, w.id, %s, 'open', %s, %s, %s, %s, %s, 0, 0, 0, 0, NULL, 0, %s, NULL
    FROM w
), e AS (
    INSERT INTO billing_ledgerentry (wallet_id, kind, amount, held_change, balance_after, held_after,
                                     idempotency_key, job_id, stripe_event_id, operator_id, memo, created_at)
    SELECT w.id, 'hold', 0, %s, w.balance, w.held, %s, %s, '', NULL, '', %s
    FROM w
    RETURNING id
)
SELECT j.token_type, c.id, c.channel_name, set_config('synchronous_commit', 'off', true),
    CASE WHEN EXISTS (SELECT 1 FROM c) AND NOT EXISTS (SELECT 1 FROM e) THEN sogni_abort('{ABORTED}') END
FROM (SELECT 1) AS one LEFT JOIN j ON true LEFT JOIN c ON true
"""  # noqa: S608 - composed of constants


def job_open(
    *,
    user: User,
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
    """Open a chat request's job: written `assigned` to a free worker slot (the worker is told after
    commit) or `queued` (Celery dispatches it), with the hold of its worst-case price taken. Subscribe
    `reply_channel` before calling this.

    `token_type` None: the account's default, read with the job's insert (the caller's `user` may be a
    cached copy). `token_counting` EXACT: `prompt_tokens_estimate` is the platform's count of the
    prompt. Raises InsufficientBalance (402) or ServiceUnavailable (503 `no_worker_available`: no
    worker of the model online) having written nothing.
    """
    job = Job(
        user=user,
        model=model,
        public_id=public_id,
        request=request,
        stream=stream,
        max_tokens=max_tokens,
        prompt_tokens_estimate=prompt_tokens_estimate,
        token_type=token_type,  # type: ignore[misc]  # None until the insert reads the account's default
        reply_channel=reply_channel,
        token_counting=token_counting,
    )
    if _open_in_one_statement(job, model=model, priced_as=token_type or user.default_token_type or "auto"):
        return job
    return _open_in_transaction(job, model=model)


def _open_in_one_statement(job: Job, *, model: LlmModel, priced_as: str) -> bool:
    """JOB_OPEN_SQL; False (nothing written) unless a free slot, the token type `priced_as` and a
    covering first wallet made it. PostgreSQL outside a transaction only."""
    if connection.vendor != "postgresql" or connection.in_atomic_block:
        return False
    terms: HoldTerms = hold_terms(
        job_id=str(job.id),
        model=model,
        prompt_tokens=job.prompt_tokens_estimate,
        max_tokens=job.max_tokens,
        token_type=priced_as,
    )
    now = timezone.now()
    claim = [
        now,
        *worker_pick_params(job.model_id, now, job_features(job.request)),
        job.user_id,
        terms.token_type,
        terms.amount,
    ]
    account = [job.token_type, job.user_id]
    insert = [
        *(job.id, job.public_id, job.user_id, job.model_id, Jsonb(job.request), job.stream, job.max_tokens),
        *(job.prompt_tokens_estimate, job.reply_channel, job.created_at, job.queued_at),
        *(now, job_lease_end(now), job.token_counting, priced_as),
    ]
    wallet = [terms.amount, now, job.user_id, terms.token_type, terms.amount]
    hold = [terms.job_id, terms.model_id, terms.amount, terms.usd_estimate, terms.input_price_usd_per_m]
    hold += [terms.output_price_usd_per_m, terms.usd_per_token, now]
    entry = [terms.amount, terms.key, terms.job_id, now]
    params = [*claim, *account, *insert, *wallet, *hold, *entry]
    try:
        with connection.cursor() as cursor:
            cursor.execute(JOB_OPEN_SQL, params)
            row = cursor.fetchone()
    except DatabaseError as error:
        if getattr(error.__cause__, "sqlstate", None) == ABORTED:
            return False
        raise
    written_token_type, worker_id, channel_name = row[:3]
    if written_token_type is None:
        return False
    job.token_type = written_token_type
    job_assign(job, worker=(worker_id, channel_name), now=now)  # outside a transaction: sent now
    return True


def _open_in_transaction(job: Job, *, model: LlmModel) -> Job:
    """The opening as one transaction: slot, job, hold. InsufficientBalance (402) or no worker online
    (503) rolls it all back, so nothing is dispatched. The commit does not wait for the disk: it is on
    the way to the first token, and a crash that loses it loses the job and its hold together."""
    with transaction.atomic():
        skip_commit_flush()
        if job.token_type is None:  # as of now: a change made elsewhere a moment ago applies
            default = User.objects.filter(pk=job.user_id).values_list("default_token_type", flat=True).first()
            job.token_type = default or TokenTypePreference.AUTO
        now = timezone.now()
        worker = worker_slot_claim(model_id=job.model_id, now=now, needs=job_features(job.request))
        if worker is not None:
            job_assign(job, worker=worker, now=now)
        job.save(force_insert=True)
        if worker is None:
            # Only a job that found no free slot asks whether it can be served at all.
            if not model_has_online_worker(model_id=model.id):
                raise no_worker(f"No worker serving `{model.id}` is online right now. Please retry shortly.")
            dispatch_job_on_commit(job.id)
        hold_take(
            user=job.user,
            job_id=str(job.id),
            model=model,
            prompt_tokens=job.prompt_tokens_estimate,
            max_tokens=job.max_tokens,
            token_type=job.token_type,
            new_job=True,
        )
    return job


def no_worker(message: str) -> ServiceUnavailable:
    """503 `no_worker_available`, with how long to wait before a retry."""
    return ServiceUnavailable(message, code="no_worker_available", headers={"Retry-After": str(RETRY_AFTER_SECONDS)})
