"""Wallets and the ledger through billing's public services: grants, holds, settlement, rewards."""

import datetime
from decimal import Decimal

import pytest
from django.db import IntegrityError, transaction

from accounts.models import TokenType
from accounts.services import user_signup
from billing.models import Hold, LedgerEntry, Wallet
from billing.pricing import estimate_usd
from billing.selectors import token_type_requested
from billing.services.adjustments import AdjustmentRejected, wallet_adjust
from billing.services.grants import DailyBonusAlreadyClaimed, account_verify, daily_bonus_claim, starter_grant_credit
from billing.services.holds import hold_release, hold_settle, hold_take
from inference.models import LlmModel
from sogni_platform.exceptions import ApiError, InsufficientBalance

pytestmark = pytest.mark.django_db
MODEL_ID = "qwen3.5-35b-a3b-gguf-q4km"


def wallet(user, token_type=TokenType.SPARK) -> Wallet:
    return Wallet.objects.get(user=user, token_type=token_type)


@pytest.fixture
def model(catalog):
    return LlmModel.objects.get(pk=MODEL_ID)


def test_verification_opens_both_wallets_and_grants_100_spark_once(make_user, settings):
    user = user_signup(email="unverified@example.com", password="correct horse battery")
    assert not Wallet.objects.filter(user=user).exists()
    assert not LedgerEntry.objects.filter(wallet__user=user).exists()
    account_verify(user=user)
    assert wallet(user).balance == Decimal("100")
    assert wallet(user, TokenType.SOGNI).balance == 0
    account_verify(user=user)
    starter_grant_credit(user=user)
    assert wallet(user).balance == Decimal("100")
    assert list(LedgerEntry.objects.filter(wallet__user=user).values_list("kind", flat=True)) == ["starter_grant"]

    settings.STARTER_GRANT_SPARK = Decimal("7.5")
    assert wallet(make_user()).balance == Decimal("7.5")


def test_estimate_is_exact_at_the_seeded_qwen_prices(model):
    # 1000 x $0.30/1M + 100 x $0.90/1M
    assert estimate_usd(model=model, prompt_tokens=1000, max_tokens=100) == Decimal("0.00039")
    assert estimate_usd(model=model, prompt_tokens=1, max_tokens=0) == Decimal("0.0000003")


def test_hold_settle_charges_usage_releases_rest_and_rewards_the_worker(make_user, model, sogni_rate):
    user, operator = make_user(), make_user()
    hold = hold_take(user=user, job_id="job-1", model=model, prompt_tokens=1000, max_tokens=1000, token_type="spark")
    # $0.0003 + $0.0009 = $0.0012 = 0.24 Spark
    assert hold.amount == Decimal("0.24")
    assert (wallet(user).balance, wallet(user).held) == (Decimal("100"), Decimal("0.24"))

    settled = hold_settle(job_id="job-1", prompt_tokens=1000, completion_tokens=10, worker_owner_id=operator.pk)
    # $0.0003 + 10 x $0.0000009 = $0.000309 = 0.0618 Spark
    assert settled.status == Hold.Status.SETTLED
    assert settled.charged == Decimal("0.0618")
    assert (wallet(user).balance, wallet(user).held) == (Decimal("99.9382"), Decimal("0"))
    # 70% of $0.000309 at $0.01 per SOGNI
    assert wallet(operator, TokenType.SOGNI).balance == Decimal("0.02163")
    kinds = list(LedgerEntry.objects.filter(job_id="job-1").order_by("id").values_list("kind", flat=True))
    assert kinds == ["hold", "charge", "release", "reward"]

    again = hold_settle(job_id="job-1", prompt_tokens=1000, completion_tokens=1000, worker_owner_id=operator.pk)
    assert again.charged == Decimal("0.0618")
    assert hold_release(job_id="job-1").status == Hold.Status.SETTLED
    assert wallet(user).balance == Decimal("99.9382")
    assert LedgerEntry.objects.filter(job_id="job-1").count() == 4


def test_an_owner_paying_in_sogni_for_their_own_workers_job_pays_the_price_and_earns_nothing(
    make_user, model, sogni_rate, settings
):
    settings.WORKER_PROBATION_DAYS = 0
    owner = make_user()
    wallet_adjust(wallet=wallet(owner, TokenType.SOGNI), amount=Decimal("10"), reason="test", operator=owner, key="k")
    hold_take(user=owner, job_id="job-own", model=model, prompt_tokens=1000, max_tokens=1000, token_type="sogni")
    # Held: $0.0012 = 0.12 SOGNI. Charged: $0.000309 = 0.0309 SOGNI; a reward paid to oneself is farming: none.
    settled = hold_settle(job_id="job-own", prompt_tokens=1000, completion_tokens=10, worker_owner_id=owner.pk)

    entries = LedgerEntry.objects.filter(job_id="job-own").order_by("id")
    assert [(e.kind, e.amount, e.held_change, e.balance_after, e.held_after) for e in entries] == [
        ("hold", 0, Decimal("0.12"), Decimal("10"), Decimal("0.12")),
        ("charge", Decimal("-0.0309"), Decimal("-0.0309"), Decimal("9.9691"), Decimal("0.0891")),
        ("release", 0, Decimal("-0.0891"), Decimal("9.9691"), Decimal("0")),
    ]
    assert (settled.reward, settled.worker_owner_id) == (0, owner.pk)
    assert (wallet(owner, TokenType.SOGNI).balance, wallet(owner, TokenType.SOGNI).held) == (Decimal("9.9691"), 0)


def test_settle_never_charges_more_than_the_hold(make_user, model):
    user = make_user()
    hold_take(user=user, job_id="job-2", model=model, prompt_tokens=10, max_tokens=5, token_type="spark")
    hold = hold_settle(job_id="job-2", prompt_tokens=10_000, completion_tokens=10_000)
    assert hold.charged == hold.amount
    assert wallet(user).balance == Decimal("100") - hold.amount
    assert wallet(user).held == 0


def test_hold_is_idempotent_on_job_id_and_release_gives_everything_back(make_user, model):
    user = make_user()
    first = hold_take(user=user, job_id="job-3", model=model, prompt_tokens=100, max_tokens=100, token_type="auto")
    second = hold_take(user=user, job_id="job-3", model=model, prompt_tokens=100, max_tokens=100, token_type="auto")
    assert first.pk == second.pk
    assert wallet(user).held == first.amount
    assert hold_release(job_id="job-3").status == Hold.Status.RELEASED
    assert hold_release(job_id="job-3").status == Hold.Status.RELEASED
    assert (wallet(user).balance, wallet(user).held) == (Decimal("100"), Decimal("0"))


def test_auto_pays_with_sogni_when_spark_is_short_and_refuses_when_both_are(make_user, model, sogni_rate):
    user, admin = make_user(), make_user()
    # 200,000 output tokens at $0.90/1M = $0.18 = 36 Spark = 18 SOGNI.
    wallet_adjust(wallet=wallet(user), amount=Decimal("-80"), reason="test", operator=admin, key="a")
    wallet_adjust(wallet=wallet(user, TokenType.SOGNI), amount=Decimal("20"), reason="test", operator=admin, key="b")
    hold = hold_take(user=user, job_id="job-4", model=model, prompt_tokens=0, max_tokens=200_000, token_type="auto")
    assert hold.token_type == TokenType.SOGNI
    assert hold.amount == Decimal("18")

    with pytest.raises(InsufficientBalance) as refused:
        hold_take(user=user, job_id="job-5", model=model, prompt_tokens=0, max_tokens=200_000, token_type="auto")
    assert refused.value.status == 402
    assert not Hold.objects.filter(job_id="job-5").exists()
    with pytest.raises(InsufficientBalance):
        hold_take(user=user, job_id="job-6", model=model, prompt_tokens=0, max_tokens=200_000, token_type="spark")
    with pytest.raises(ApiError):
        hold_take(user=user, job_id="job-7", model=model, prompt_tokens=0, max_tokens=1, token_type="gold")
    assert wallet(user).held == 0
    assert wallet(user, TokenType.SOGNI).held == Decimal("18")


def test_daily_bonus_once_per_utc_day(make_user):
    user = make_user()
    morning = datetime.datetime(2026, 3, 1, 0, 5, tzinfo=datetime.UTC)
    daily_bonus_claim(user=user, now=morning)
    assert wallet(user).balance == Decimal("150")
    with pytest.raises(DailyBonusAlreadyClaimed) as refused:
        daily_bonus_claim(user=user, now=morning + datetime.timedelta(hours=23))
    assert refused.value.next_claim_at == datetime.datetime(2026, 3, 2, tzinfo=datetime.UTC)
    daily_bonus_claim(user=user, now=datetime.datetime(2026, 3, 2, 0, 0, tzinfo=datetime.UTC))
    assert wallet(user).balance == Decimal("200")


def test_adjustment_records_reason_and_operator_and_cannot_overdraw(make_user):
    user, operator = make_user(), make_user()
    entry = wallet_adjust(
        wallet=wallet(user), amount=Decimal("-0.5"), reason="goodwill undo", operator=operator, key="k"
    )
    assert (entry.kind, entry.memo, entry.operator, entry.balance_after) == (
        "adjustment",
        "goodwill undo",
        operator,
        Decimal("99.5"),
    )
    with pytest.raises(AdjustmentRejected):
        wallet_adjust(wallet=wallet(user), amount=Decimal("-100"), reason="too much", operator=operator, key="k2")
    assert wallet(user).balance == Decimal("99.5")


def test_database_forbids_negative_available_balance(make_user):
    user = make_user()
    with pytest.raises(IntegrityError), transaction.atomic():
        Wallet.objects.filter(pk=wallet(user).pk).update(held=Decimal("100.000000001"))
    with pytest.raises(IntegrityError), transaction.atomic():
        Wallet.objects.filter(pk=wallet(user).pk).update(held=Decimal("-1"))


def test_token_type_body_beats_header_beats_account_default(make_user):
    user = make_user()
    user.default_token_type = "sogni"
    assert token_type_requested(body_value="spark", header_value="sogni", user=user) == "spark"
    assert token_type_requested(body_value=None, header_value="Auto", user=user) == "auto"
    assert token_type_requested(body_value=None, header_value=None, user=user) == "sogni"
    with pytest.raises(ApiError) as bad:
        token_type_requested(body_value=3, header_value=None, user=user)
    assert bad.value.param == "token_type"


def test_settlement_charges_the_prices_in_effect_when_the_hold_was_taken(make_user, model, sogni_rate):
    from billing.models import SogniRate

    user, operator = make_user(), make_user()
    wallet_adjust(wallet=wallet(user, TokenType.SOGNI), amount=Decimal("10"), reason="t", operator=operator, key="s")
    hold_take(user=user, job_id="job-p", model=model, prompt_tokens=0, max_tokens=100_000, token_type="sogni")
    LlmModel.objects.filter(pk=model.pk).update(output_price_usd_per_m=Decimal("9"))
    SogniRate.objects.create(usd_per_sogni=Decimal("0.02"))

    hold = hold_settle(job_id="job-p", prompt_tokens=0, completion_tokens=50_000, worker_owner_id=operator.pk)

    # 50,000 x $0.90/1M = $0.045 at the held $0.01 per SOGNI = 4.5 SOGNI (of the 9 held).
    assert (hold.charged, hold.usd_charged) == (Decimal("4.5"), Decimal("0.045"))
    assert wallet(user, TokenType.SOGNI).balance == Decimal("5.5")
    # The reward converts at the current rate: 70% of $0.045 at $0.02 = 1.575 SOGNI.
    assert wallet(operator, TokenType.SOGNI).balance == Decimal("1.575")
