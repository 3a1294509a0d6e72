"""Concurrency on PostgreSQL: real threads, each with its own connection, racing on one wallet."""

import threading
from decimal import Decimal

import pytest
from django.db import connection, connections

from accounts.models import TokenType
from billing.models import DailyBonusClaim, Hold, LedgerEntry, Wallet
from billing.services.adjustments import wallet_adjust
from billing.services.grants import DailyBonusAlreadyClaimed, daily_bonus_claim
from billing.services.holds import hold_take
from inference.models import LlmModel
from sogni_platform.exceptions import InsufficientBalance

MODEL_ID = "qwen3.5-35b-a3b-gguf-q4km"


def race(count: int, work) -> list:
    """Run work(i) in `count` threads released at once; returns each result or exception."""
    barrier = threading.Barrier(count)
    results: list = [None] * count

    def run(i: int) -> None:
        try:
            barrier.wait()
            results[i] = work(i)
        except Exception as error:  # noqa: BLE001 - the outcome is the test's to judge
            results[i] = error
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    return results


@pytest.fixture
def postgres():
    if connection.vendor != "postgresql":
        pytest.skip("row locks and concurrent claims are tested on PostgreSQL")


def test_50_concurrent_holds_of_a_tenth_of_the_balance_exactly_10_succeed(
    transactional_db, postgres, catalog, make_user
):
    user, operator = make_user(), make_user()
    model = LlmModel.objects.get(pk=MODEL_ID)
    # Each hold: 1000 prompt + 1000 max tokens = $0.0012 = 0.24 Spark; the wallet holds 2.4 Spark.
    spark = Wallet.objects.get(user=user, token_type=TokenType.SPARK)
    wallet_adjust(wallet=spark, amount=Decimal("-97.6"), reason="set up the race", operator=operator, key="race")

    results = race(
        50,
        lambda i: hold_take(
            user=user, job_id=f"race-{i}", model=model, prompt_tokens=1000, max_tokens=1000, token_type="spark"
        ),
    )

    holds = [r for r in results if isinstance(r, Hold)]
    refused = [r for r in results if isinstance(r, InsufficientBalance)]
    assert len(holds) == 10, results
    assert len(refused) == 40, results
    spark.refresh_from_db()
    assert spark.balance == Decimal("2.4")
    assert spark.held == Decimal("2.4")
    assert spark.available == 0
    entries = LedgerEntry.objects.filter(wallet=spark)
    assert all(e.balance_after - e.held_after >= 0 for e in entries)
    assert entries.filter(kind="hold").count() == 10


def test_20_concurrent_daily_bonus_claims_credit_once(transactional_db, postgres, make_user):
    user = make_user()
    results = race(20, lambda i: daily_bonus_claim(user=user))

    credited = [r for r in results if isinstance(r, LedgerEntry)]
    refused = [r for r in results if isinstance(r, DailyBonusAlreadyClaimed)]
    assert (len(credited), len(refused)) == (1, 19), results
    assert Wallet.objects.get(user=user, token_type=TokenType.SPARK).balance == Decimal("150")
    assert LedgerEntry.objects.filter(wallet__user=user, kind="daily_bonus").count() == 1
    assert DailyBonusClaim.objects.filter(user=user).count() == 1
