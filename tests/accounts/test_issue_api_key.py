from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from accounts.models import ApiKeyAuditEvent, User
from accounts.selectors import api_key_authenticate
from accounts.services import api_key_disable
from billing.models import LedgerEntry, Wallet
from tests.support.factories import account_create

pytestmark = pytest.mark.django_db


def _issue(email: str) -> str:
    out, err = StringIO(), StringIO()
    call_command("issue_api_key", email, stdout=out, stderr=err)
    return out.getvalue().strip()


def test_creates_the_account_verified_and_funded_and_prints_only_a_usable_key(mailoutbox):
    key = _issue("New@Example.com")
    user = User.objects.get()
    assert user.email == "new@example.com"
    assert user.has_usable_password()
    assert user.email_verified_at is not None and mailoutbox == []
    spark = Wallet.objects.get(user=user, token_type="spark")
    assert spark.balance == Decimal("100")
    assert list(LedgerEntry.objects.filter(wallet=spark).values_list("kind", flat=True)) == ["starter_grant"]
    assert api_key_authenticate(key).user == user
    reveal = ApiKeyAuditEvent.objects.filter(api_key=user.api_key, action="revealed").get()
    assert reveal.actor is None and "issue_api_key" in reveal.reason


def test_existing_account_gets_its_current_key_any_case():
    user, raw = account_create(email="ada@example.com")
    assert _issue("ADA@example.com") == raw
    assert User.objects.count() == 1


def test_account_without_a_key_gets_one(django_user_model):
    user = django_user_model.objects.create_superuser("admin@example.com", "correct horse battery staple")
    assert api_key_authenticate(_issue("admin@example.com")).user == user


def test_refuses_a_malformed_email_or_a_disabled_key():
    with pytest.raises(CommandError, match="Not a valid email"):
        _issue("not-an-email")
    assert User.objects.count() == 0
    user, _ = account_create(email="ada@example.com")
    api_key_disable(api_key=user.api_key, actor=None, reason="disabled by operator")
    with pytest.raises(CommandError, match="disabled"):
        _issue("ada@example.com")
