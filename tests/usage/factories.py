"""Finished jobs with real holds and settlements, for the read-only usage and console pages.

Jobs are written with the ORM (their timestamps and token counts are the fixture); the money goes
through billing's own services, so holds, charges, rewards and the ledger are the real thing.
Timestamps of past days are set by moving the rows' created_at back.
"""

import datetime
from decimal import Decimal

from django.utils import timezone

from billing.models import Hold, LedgerEntry
from billing.services.holds import hold_settle, hold_take
from inference.models import Job, LlmModel, Worker
from inference.openai.responses import completion_id
from tests.support.factories import SMOLLM2


def days_ago(days: int, *, hour: int = 12) -> datetime.datetime:
    today = timezone.now().astimezone(datetime.UTC).date() - datetime.timedelta(days=days)
    return datetime.datetime.combine(today, datetime.time(hour), tzinfo=datetime.UTC)


def worker_make(*, owner, name: str = "gpu-1", status: str = Worker.Status.OFFLINE, **fields) -> Worker:
    worker = Worker.objects.create(owner=owner, name=name, status=status, **fields)
    worker.served_models.set([SMOLLM2])
    return worker


def job_make(
    *,
    user,
    model_id: str = SMOLLM2,
    at: datetime.datetime | None = None,
    prompt: int = 0,
    completion: int = 0,
    reasoning: int = 0,
    status: str = Job.Status.COMPLETED,
    worker: Worker | None = None,
    token_type: str = "spark",
    settle: bool = True,
    ttft_ms: int = 250,
    generation_ms: int = 1000,
    hold_key: str = "public_id",
    **fields,
) -> Job:
    at = at or timezone.now() - datetime.timedelta(seconds=5)
    assigned = at + datetime.timedelta(milliseconds=50)
    first = at + datetime.timedelta(milliseconds=ttft_ms) if completion else None
    finished = (first or assigned) + datetime.timedelta(milliseconds=generation_ms)
    ended = status in Job.FINISHED
    job = Job.objects.create(
        user=user,
        model_id=model_id,
        public_id=completion_id(),
        max_tokens=max(completion, 1) + 16,
        reply_channel="test!reply",
        status=status,
        worker=worker,
        created_at=at,
        assigned_at=assigned if worker else None,
        first_token_at=first,
        finished_at=finished if ended else None,
        finish_reason="stop" if status == Job.Status.COMPLETED else "",
        prompt_tokens=prompt,
        completion_tokens=completion,
        reasoning_tokens=reasoning,
        **fields,
    )
    if settle:
        key = job.public_id if hold_key == "public_id" else str(job.id)
        model = LlmModel.objects.get(pk=model_id)
        hold_take(
            user=user, job_id=key, model=model, prompt_tokens=prompt, max_tokens=job.max_tokens, token_type=token_type
        )
        hold_settle(
            job_id=key,
            prompt_tokens=prompt,
            completion_tokens=completion,
            worker_owner_id=worker.owner_id if worker and status == Job.Status.COMPLETED else None,
        )
        Hold.objects.filter(job_id=key).update(created_at=at, closed_at=finished)
        LedgerEntry.objects.filter(job_id=key).update(created_at=finished)
    return job


def sogni_grant(*, user, amount: str = "10", operator=None) -> None:
    """SOGNI to spend, through billing's own adjustment (an operator's correction)."""
    from billing.services.adjustments import wallet_adjust
    from billing.services.ledger import wallets_ensure

    wallet = wallets_ensure(user=user)["sogni"]
    wallet_adjust(
        wallet=wallet, amount=Decimal(amount), reason="test funds", operator=operator or user, key=f"grant-{user.pk}"
    )


def usd(prompt: int, completion: int) -> Decimal:
    """Every catalog model: $0.30 / $0.90 per 1M input / output tokens."""
    return (Decimal(prompt) * Decimal("0.30") + Decimal(completion) * Decimal("0.90")) / 1_000_000
