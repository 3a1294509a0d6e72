"""Free-credit farming: signups per client address are limited, and the starter grant waits for the
emailed verification link, which credits it once."""

import datetime
import re
import time
from decimal import Decimal

import pytest
from django.test import Client
from django.urls import reverse

from accounts.models import User
from billing.models import LedgerEntry, Wallet
from tests.billing.test_concurrency import race
from tests.support.factories import PASSWORD
from tests.support.processes import free_port

pytestmark = pytest.mark.django_db
THROTTLED = "Too many accounts were created from your network address in the last hour."
LINK = re.compile(r"http://testserver(/verify-email/[^/\s]+/)")


def _signup(email: str, client: Client | None = None, **headers):
    client = client or Client(**headers)
    form = {"email": email, "password1": PASSWORD, "password2": PASSWORD}
    return client.post(reverse("accounts:signup"), form, **headers)


def _spark(email: str) -> Decimal:
    """The Spark balance the dashboard shows (no wallet yet: none)."""
    balance = Wallet.objects.filter(user__email=email, token_type="spark").values_list("balance", flat=True).first()
    return balance or Decimal(0)


def _grants(email: str) -> int:
    return LedgerEntry.objects.filter(wallet__user__email=email, kind="starter_grant").count()


def _link(message) -> str:
    return LINK.search(message.body).group(1)


def test_the_sixth_signup_from_one_address_within_an_hour_is_refused_and_another_address_is_not():
    for n in range(5):
        assert _signup(f"farm{n}@example.com", REMOTE_ADDR="198.51.100.7").status_code == 302

    refused = _signup("farm5@example.com", REMOTE_ADDR="198.51.100.7")
    assert refused.status_code == 429
    assert THROTTLED in refused.content.decode()
    assert "Try again in 60 minutes." in refused.content.decode()
    assert 3590 <= int(refused["Retry-After"]) <= 3601
    assert not User.objects.filter(email="farm5@example.com").exists()

    assert _signup("neighbour@example.com", REMOTE_ADDR="198.51.100.8").status_code == 302

    # The window slides: once the first of the five is over an hour old, one more is let in.
    first = User.objects.get(email="farm0@example.com")
    User.objects.filter(pk=first.pk).update(date_joined=first.date_joined - datetime.timedelta(hours=1))
    assert _signup("farm5@example.com", REMOTE_ADDR="198.51.100.7").status_code == 302
    assert _signup("farm6@example.com", REMOTE_ADDR="198.51.100.7").status_code == 429


def test_x_forwarded_for_counts_only_behind_the_proxy_and_only_its_last_entry(settings):
    settings.SIGNUP_LIMIT_PER_HOUR = 2
    # Not behind a proxy: the header is the client's word, ignored.
    for n in range(2):
        response = _signup(f"direct{n}@example.com", REMOTE_ADDR="192.0.2.1", HTTP_X_FORWARDED_FOR=f"10.9.9.{n}")
        assert response.status_code == 302
    assert _signup("direct2@example.com", REMOTE_ADDR="192.0.2.1", HTTP_X_FORWARDED_FOR="10.9.9.9").status_code == 429
    assert set(User.objects.values_list("signup_address", flat=True)) == {"192.0.2.1"}

    # Behind it: the entry the proxy appended is the client; what the client put before it is not.
    settings.BEHIND_TLS_PROXY = True
    for n in range(2):
        spoofed = f"10.0.0.{n}, 203.0.113.5"
        response = _signup(f"proxied{n}@example.com", REMOTE_ADDR="192.0.2.1", HTTP_X_FORWARDED_FOR=spoofed)
        assert response.status_code == 302
    third = _signup("proxied2@example.com", REMOTE_ADDR="192.0.2.1", HTTP_X_FORWARDED_FOR="10.0.0.7, 203.0.113.5")
    assert third.status_code == 429 and THROTTLED in third.content.decode()
    other = _signup("proxied3@example.com", REMOTE_ADDR="192.0.2.1", HTTP_X_FORWARDED_FOR="203.0.113.6")
    assert other.status_code == 302
    assert User.objects.get(email="proxied3@example.com").signup_address == "203.0.113.6"


@pytest.mark.django_db(transaction=True)
def test_concurrent_signups_from_one_address_are_counted_one_after_another():
    results = race(8, lambda n: _signup(f"rush{n}@example.com", REMOTE_ADDR="198.51.100.99").status_code)
    assert sorted(results) == [302] * 5 + [429] * 3
    assert User.objects.filter(signup_address="198.51.100.99").count() == 5


def test_the_grant_waits_for_the_emailed_link_which_credits_it_exactly_once(client, mailoutbox):
    assert _signup("new@example.com", client).status_code == 302
    assert _spark("new@example.com") == 0 and _grants("new@example.com") == 0
    dashboard = client.get(reverse("dashboard:index")).content.decode()
    assert "Your 100 Spark starter grant awaits verification of your email address" in dashboard
    assert "Resend the email" in dashboard

    [message] = mailoutbox
    assert message.to == ["new@example.com"] and message.subject == "Verify your email address"
    assert "receive your 100 Spark starter grant" in message.body
    link = _link(message)

    opened = Client().get(link)  # from any browser: the link itself identifies the account
    assert opened.status_code == 200
    assert "new@example.com is verified. Your 100 Spark starter grant is in your wallet." in opened.content.decode()
    assert _spark("new@example.com") == Decimal("100") and _grants("new@example.com") == 1
    assert User.objects.get(email="new@example.com").email_verified_at is not None

    again = client.get(link)
    assert again.status_code == 200 and "was already verified" in again.content.decode()
    assert _spark("new@example.com") == Decimal("100") and _grants("new@example.com") == 1
    dashboard = client.get(reverse("dashboard:index")).content.decode()
    assert "awaits verification" not in dashboard and "Resend the email" not in dashboard


def test_a_tampered_or_expired_link_verifies_nothing_and_a_resent_one_does(client, mailoutbox, settings):
    settings.EMAIL_VERIFICATION_MAX_AGE = 1
    settings.EMAIL_VERIFICATION_RESEND_SECONDS = 0
    _signup("late@example.com", client)
    link = _link(mailoutbox[0])
    assert "The link is valid for 1 minute." in mailoutbox[0].body
    token = link.split("/")[2]
    for bad in (f"/verify-email/{token[:-1]}{'A' if token[-1] != 'A' else 'B'}/", "/verify-email/x:y:z/"):
        response = client.get(bad)
        assert response.status_code == 400
        assert "invalid or has expired" in response.content.decode()
    time.sleep(2.1)
    expired = client.get(link)
    assert expired.status_code == 400 and "invalid or has expired" in expired.content.decode()
    assert _spark("late@example.com") == 0 and User.objects.get(email="late@example.com").email_verified_at is None

    resent = client.post(reverse("dashboard:email_verification_resend"), follow=True)
    assert "We sent a new verification link to late@example.com." in resent.content.decode()
    assert len(mailoutbox) == 2
    assert client.get(_link(mailoutbox[1])).status_code == 200
    assert _spark("late@example.com") == Decimal("100") and _grants("late@example.com") == 1


def test_resend_is_throttled_per_account(client, mailoutbox, settings):
    _signup("again@example.com", client)
    refused = client.post(reverse("dashboard:email_verification_resend"))
    assert refused.status_code == 429
    assert "A verification email was sent moments ago. You can ask for another in" in refused.content.decode()
    assert 1 <= int(refused["Retry-After"]) <= 61
    assert len(mailoutbox) == 1

    settings.EMAIL_VERIFICATION_RESEND_SECONDS = 0
    assert client.post(reverse("dashboard:email_verification_resend")).status_code == 302
    assert len(mailoutbox) == 2
    assert client.get(reverse("dashboard:email_verification_resend")).status_code == 405

    client.get(_link(mailoutbox[1]))
    done = client.post(reverse("dashboard:email_verification_resend"), follow=True)
    assert "Your email address is already verified." in done.content.decode()
    assert len(mailoutbox) == 2


def test_an_unverified_account_claims_no_daily_bonus_until_it_is_verified(client, mailoutbox):
    _signup("bonus@example.com", client)
    assert "Verify your email address to claim the daily bonus." in client.get(reverse("dashboard:index")).text
    refused = client.post(reverse("billing:daily-bonus"), follow=True).text
    assert "Verify your email address first: the daily bonus goes to verified accounts." in refused
    assert _spark("bonus@example.com") == 0
    assert not LedgerEntry.objects.filter(kind="daily_bonus").exists()

    client.get(_link(mailoutbox[0]))
    claimed = client.post(reverse("billing:daily-bonus"), follow=True).text
    assert "Daily bonus claimed: +50 Spark" in claimed
    assert _spark("bonus@example.com") == Decimal("150")


def test_a_mail_server_that_cannot_be_reached_does_not_lose_the_signup(client, settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_TIMEOUT = "127.0.0.1", free_port(), 2
    assert _signup("offline@example.com", client).status_code == 302
    assert User.objects.get(email="offline@example.com").verification_sent_at is None  # resend is open at once
    retried = client.post(reverse("dashboard:email_verification_resend"), follow=True).text
    assert "The email could not be sent just now. Please try again in a few minutes." in retried
