"""Worker earnings escrow: a new worker owner's rewards are credited but held for the probation
period (WORKER_PROBATION_DAYS from their first reward), then a periodic release makes them available.
The ledger still sums to every balance and held amount."""

import datetime
from decimal import Decimal

import pytest
from django.utils import timezone

from accounts.models import TokenType
from billing.escrow import escrow_release_due
from billing.models import LedgerEntry, Wallet
from billing.selectors import ledger_invariant_violations, wallet_escrowed
from billing.services.holds import hold_settle, hold_take
from inference.models import LlmModel
from inference.tasks import release_escrow_task

pytestmark = pytest.mark.django_db
MODEL_ID = "qwen3.5-35b-a3b-gguf-q4km"


def serve(user, operator, job_id: str):
    model = LlmModel.objects.get(pk=MODEL_ID)
    hold_take(user=user, job_id=job_id, model=model, prompt_tokens=1000, max_tokens=1000, token_type="spark")
    return hold_settle(job_id=job_id, prompt_tokens=1000, completion_tokens=10, worker_owner_id=operator.pk)


def sogni(user) -> Wallet:
    return Wallet.objects.get(user=user, token_type=TokenType.SOGNI)


def test_rewards_wait_in_escrow_for_the_probation_period_then_become_available(
    catalog, make_user, sogni_rate, settings
):
    settings.WORKER_PROBATION_DAYS = 7
    user, operator = make_user(), make_user()
    first = serve(user, operator, "job-1")
    second = serve(user, operator, "job-2")
    reward = first.reward + second.reward
    assert first.reward == Decimal("0.02163")

    wallet = sogni(operator)
    assert (wallet.balance, wallet.held, wallet.available) == (reward, reward, Decimal("0"))
    assert wallet_escrowed(wallet=wallet) == reward
    assert ledger_invariant_violations() == []

    release_escrow_task()  # the periodic task: probation still running, nothing moves
    assert sogni(operator).available == 0

    assert escrow_release_due(now=timezone.now() + datetime.timedelta(days=7, minutes=1)) == 1
    wallet = sogni(operator)
    assert (wallet.balance, wallet.held, wallet.available) == (reward, Decimal("0"), reward)
    assert wallet_escrowed(wallet=wallet) == 0
    kinds = list(LedgerEntry.objects.filter(wallet=wallet).order_by("id").values_list("kind", flat=True))
    assert kinds == ["reward", "reward", "escrow_release"]
    assert escrow_release_due(now=timezone.now() + datetime.timedelta(days=8)) == 0  # once
    assert ledger_invariant_violations() == []


def test_after_probation_rewards_are_available_at_once(catalog, make_user, sogni_rate, settings):
    settings.WORKER_PROBATION_DAYS = 7
    user, operator = make_user(), make_user()
    serve(user, operator, "job-old")
    # The owner's first reward was 8 days ago: probation is over.
    LedgerEntry.objects.filter(kind=LedgerEntry.Kind.REWARD).update(
        created_at=timezone.now() - datetime.timedelta(days=8)
    )
    escrow_release_due()
    later = serve(user, operator, "job-new")

    wallet = sogni(operator)
    assert wallet.held == 0
    assert wallet.available == wallet.balance == later.reward * 2
    assert ledger_invariant_violations() == []


def test_without_probation_nothing_is_escrowed(catalog, make_user, sogni_rate, settings):
    settings.WORKER_PROBATION_DAYS = 0
    user, operator = make_user(), make_user()
    hold = serve(user, operator, "job-1")
    assert sogni(operator).available == hold.reward > 0
