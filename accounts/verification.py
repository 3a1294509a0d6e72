"""Email verification: a signed, expiring link (opening it also credits billing's starter grant:
billing.services.grants.account_verify).

The link carries the account id and address signed with SECRET_KEY (django.core.signing), valid for
EMAIL_VERIFICATION_MAX_AGE seconds; nothing is stored per link, so a resend leaves earlier links valid.
"""

import datetime
import logging
import smtplib

from django.conf import settings
from django.core import signing
from django.core.mail import send_mail
from django.db import transaction
from django.db.models import Q
from django.urls import reverse
from django.utils import timezone

from accounts.models import User

logger = logging.getLogger(__name__)

_SALT = "accounts.email-verification"


class VerificationResendThrottled(Exception):
    def __init__(self, retry_after: int):
        super().__init__(f"A verification email was sent moments ago. You can ask for another in {retry_after}s.")
        self.retry_after = retry_after


def email_verification_token(*, user: User) -> str:
    return signing.dumps({"user": user.pk, "email": user.email}, salt=_SALT)


def email_verification_user(*, token: str) -> User | None:
    """The account a valid, unexpired link names; None for a tampered, expired or stale one."""
    try:
        claim = signing.loads(token, salt=_SALT, max_age=settings.EMAIL_VERIFICATION_MAX_AGE)
    except signing.BadSignature:  # SignatureExpired included
        return None
    return User.objects.filter(pk=claim.get("user"), email=claim.get("email"), is_active=True).first()


@transaction.atomic
def user_email_verify(*, user: User) -> bool:
    """Marks the address verified; True the first time only."""
    user = User.objects.select_for_update().get(pk=user.pk)
    first = user.email_verified_at is None
    if first:
        user.email_verified_at = timezone.now()
        user.save(update_fields=["email_verified_at"])
    return first


def email_verification_send(*, user: User, site_url: str) -> bool:
    """Emails the link (site_url: the site's absolute root URL); at most one email per account every
    EMAIL_VERIFICATION_RESEND_SECONDS (raises VerificationResendThrottled). False if sending failed."""
    now = timezone.now()
    cutoff = now - datetime.timedelta(seconds=settings.EMAIL_VERIFICATION_RESEND_SECONDS)
    due = Q(verification_sent_at__isnull=True) | Q(verification_sent_at__lte=cutoff)
    # One conditional statement: of concurrent requests only one sends.
    if not User.objects.filter(due, pk=user.pk, email_verified_at__isnull=True).update(verification_sent_at=now):
        row = User.objects.values("email_verified_at", "verification_sent_at").get(pk=user.pk)
        if row["email_verified_at"] is not None:
            return True  # nothing left to verify
        sent_at = row["verification_sent_at"]
        assert sent_at is not None  # sent within the window, or the update above had matched
        wait = (sent_at - cutoff).total_seconds()
        raise VerificationResendThrottled(retry_after=max(1, int(wait) + 1))
    link = site_url.rstrip("/") + reverse("email_verify", args=[email_verification_token(user=user)])
    try:
        send_mail("Verify your email address", _body(user.email, link), None, [user.email])
    except (OSError, smtplib.SMTPException):
        logger.exception("verification email to user %s not sent", user.pk)
        User.objects.filter(pk=user.pk, verification_sent_at=now).update(verification_sent_at=None)
        return False
    return True


def starter_grant_label() -> str:
    """ "100 Spark", or "" when there is no starter grant."""
    grant = settings.STARTER_GRANT_SPARK
    return f"{grant.normalize():f} Spark" if grant > 0 else ""


def _body(email: str, link: str) -> str:
    grant = starter_grant_label()
    reward = f" and receive your {grant} starter grant" if grant else ""
    seconds = settings.EMAIL_VERIFICATION_MAX_AGE
    minutes = max(1, seconds // 60)
    valid = f"{seconds // 3600} hours" if seconds >= 7200 else f"{minutes} minute{'s' if minutes > 1 else ''}"
    return (
        f"Welcome to Sogni Intelligence.\n\nOpen this link to verify {email}{reward}:\n\n{link}\n\n"
        f"The link is valid for {valid}. If you did not sign up, ignore this email.\n"
    )
