"""The wallet panel and its POST actions, and the operators' admin, through Django's test client."""

from decimal import Decimal

import pytest
from django.urls import reverse

from accounts.models import User
from billing.models import LedgerEntry, Wallet

pytestmark = pytest.mark.django_db


@pytest.fixture
def logged_in(client, make_user):
    user = make_user()
    client.force_login(user)
    return user


def test_panel_shows_balances_bonus_button_packages_and_transactions(client, logged_in):
    page = client.get(reverse("dashboard:index")).content.decode()
    assert 'data-token-type="spark"' in page and 'data-token-type="sogni"' in page
    assert "Claim daily bonus" in page
    assert "Buy 1,000 Spark for $5" in page and "Buy 5,000 Spark for $25" in page
    assert "Starter grant" in page


def test_claiming_twice_says_when_the_next_claim_is(client, logged_in):
    first = client.post(reverse("billing:daily-bonus"), {"next": "/dashboard/"}, follow=True)
    assert "Daily bonus claimed: +50 Spark" in first.content.decode()
    assert Wallet.objects.get(user=logged_in, token_type="spark").balance == Decimal("150")
    assert "Claim daily bonus" not in first.content.decode()
    assert "Next daily bonus at" in first.content.decode()

    second = client.post(reverse("billing:daily-bonus"), follow=True).content.decode()
    assert "Already claimed today. Next daily bonus at" in second
    assert Wallet.objects.get(user=logged_in, token_type="spark").balance == Decimal("150")


def test_buy_without_stripe_keys_explains_top_ups_are_not_configured(client, logged_in, settings):
    settings.STRIPE_SECRET_KEY = None
    response = client.post(reverse("billing:checkout"), {"usd": "10"}, follow=True)
    assert "Top-ups are not configured" in response.content.decode()


def test_default_token_type_is_saved(client, logged_in):
    response = client.post(reverse("billing:token-type"), {"token_type": "sogni"}, follow=True)
    assert "now pay with: SOGNI" in response.content.decode()
    assert User.objects.get(pk=logged_in.pk).default_token_type == "sogni"
    client.post(reverse("billing:token-type"), {"token_type": "gold"})
    assert User.objects.get(pk=logged_in.pk).default_token_type == "sogni"


def test_actions_need_login_and_post(client, make_user):
    assert client.post(reverse("billing:daily-bonus")).status_code == 302
    assert not LedgerEntry.objects.filter(kind="daily_bonus").exists()
    client.force_login(make_user())
    assert client.get(reverse("billing:daily-bonus")).status_code == 405


def test_transactions_are_paginated(client, logged_in):
    from billing.services.adjustments import wallet_adjust

    operator = User.objects.create_superuser("ops@example.com", "pw")
    wallet = Wallet.objects.get(user=logged_in, token_type="spark")
    for i in range(12):
        wallet_adjust(wallet=wallet, amount=Decimal(i + 1), reason=f"adj {i}", operator=operator, key=f"p{i}")
    first = client.get("/dashboard/").content.decode()
    assert first.count('class="ledger-entry"') == 10
    assert "Page 1 of 2" in first
    second = client.get("/dashboard/?tx_page=2").content.decode()
    assert second.count('class="ledger-entry"') == 3
    assert "Starter grant" in second


def test_admin_adjustment_writes_an_entry_with_reason_and_operator(client, make_user):
    user = make_user()
    operator = User.objects.create_superuser("ops@example.com", "pw")
    client.force_login(operator)
    wallet = Wallet.objects.get(user=user, token_type="sogni")
    url = reverse("admin:billing_wallet_adjust", args=[wallet.pk])
    form = client.get(url)
    assert form.status_code == 200
    key = form.context["form"].initial["key"]
    for _ in range(2):  # a double submit writes once
        client.post(url, {"amount": "12.5", "reason": "compensation for outage", "key": key})
    entry = LedgerEntry.objects.get(kind="adjustment")
    assert (entry.amount, entry.memo, entry.operator) == (Decimal("12.5"), "compensation for outage", operator)
    wallet.refresh_from_db()
    assert wallet.balance == Decimal("12.5")
    assert client.get(reverse("admin:billing_wallet_changelist")).status_code == 200
    assert client.get(reverse("admin:billing_ledgerentry_changelist")).status_code == 200
    assert client.get(reverse("admin:billing_sognirate_add")).status_code == 200
    assert client.get(reverse("admin:billing_wallet_change", args=[wallet.pk])).status_code == 200
