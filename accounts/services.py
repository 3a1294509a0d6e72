import datetime

from django.conf import settings
from django.contrib.auth.password_validation import validate_password
from django.db import connection, transaction
from django.utils import timezone

from accounts.keys import decrypt_key, encrypt_key, generate_key, hash_secret
from accounts.models import ApiKey, ApiKeyAuditEvent, TokenTypePreference, User
from accounts.signals import api_key_revoked

# disabled_reason written when the owner disables their own key; any other reason (an operator's,
# the platform's) means the owner cannot re-enable it from the dashboard.
OWNER_DISABLED = "disabled by owner"


class ApiKeyLocked(Exception):
    """The owner tried to re-enable a key someone else disabled."""


class SignupThrottled(Exception):
    """Too many accounts from one client address within the hour."""

    def __init__(self, retry_after: int):
        minutes = max(1, -(-retry_after // 60))
        super().__init__(
            "Too many accounts were created from your network address in the last hour. "
            f"Try again in {minutes} minute{'s' if minutes > 1 else ''}."
        )
        self.retry_after = retry_after


SIGNUP_WINDOW = datetime.timedelta(hours=1)


@transaction.atomic
def user_signup(*, email: str, password: str, address: str | None = None) -> User:
    """Create an account with its API key (its wallets come with verification's starter grant, in
    billing). Callers validate the form; this re-checks the password. `address`: the client's, at
    most SIGNUP_LIMIT_PER_HOUR accounts each (raises
    SignupThrottled); None (an operator's command) is not limited. The starter grant waits for the
    email address to be verified (billing.services.grants.account_verify)."""
    if address is not None:
        _signup_address_check(address)
    user = User(email=User.objects.normalize_email(email).lower(), signup_address=address)
    validate_password(password, user)
    user.set_password(password)
    user.save()
    api_key_create(user=user)
    return user


def _signup_address_check(address: str) -> None:
    limit = settings.SIGNUP_LIMIT_PER_HOUR
    if not limit:
        return
    if connection.vendor == "postgresql":
        # Concurrent signups from one address count one after another (SQLite's writes already do).
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [f"accounts.signup:{address}"])
    now = timezone.now()
    recent = list(
        User.objects.filter(signup_address=address, date_joined__gt=now - SIGNUP_WINDOW)
        .order_by("date_joined")
        .values_list("date_joined", flat=True)
    )
    if len(recent) >= limit:
        frees_up = recent[len(recent) - limit] + SIGNUP_WINDOW
        raise SignupThrottled(retry_after=max(1, int((frees_up - now).total_seconds()) + 1))


def worker_connections_close_on_commit(*, user_id: int) -> None:
    """The account's key stopped authenticating: after commit its worker sockets are closed, in every
    server process (4001; inference listens for api_key_revoked)."""
    api_key_revoked.send(sender=User, user_id=user_id)


def _audit(api_key: ApiKey, action: str, actor: User | None, reason: str = "") -> None:
    ApiKeyAuditEvent.objects.create(api_key=api_key, action=action, actor=actor, reason=reason)


def api_key_create(*, user: User) -> tuple[ApiKey, str]:
    """Returns the row and the raw key, which is shown once and never stored in plain text."""
    raw, parsed = generate_key()
    api_key = ApiKey.objects.create(
        user=user,
        lookup_id=parsed.lookup_id,
        secret_hash=hash_secret(parsed.secret),
        encrypted_key=encrypt_key(raw),
    )
    _audit(api_key, ApiKeyAuditEvent.Action.CREATED, user)
    return api_key, raw


@transaction.atomic
def api_key_reveal(*, api_key: ApiKey, actor: User | None, reason: str = "") -> str:
    """The raw key; every reveal is audited (actor None: an operator's command line)."""
    _audit(api_key, ApiKeyAuditEvent.Action.REVEALED, actor, reason)
    return decrypt_key(api_key.encrypted_key)


@transaction.atomic
def api_key_regenerate(*, api_key: ApiKey, actor: User | None) -> str:
    """A new secret and lookup id; the old key stops authenticating at once."""
    api_key = ApiKey.objects.select_for_update().get(pk=api_key.pk)
    raw, parsed = generate_key()
    api_key.lookup_id = parsed.lookup_id
    api_key.secret_hash = hash_secret(parsed.secret)
    api_key.encrypted_key = encrypt_key(raw)
    api_key.rotated_at = timezone.now()
    api_key.save(update_fields=["lookup_id", "secret_hash", "encrypted_key", "rotated_at"])
    _audit(api_key, ApiKeyAuditEvent.Action.REGENERATED, actor)
    worker_connections_close_on_commit(user_id=api_key.user_id)
    return raw


@transaction.atomic
def api_key_disable(*, api_key: ApiKey, actor: User | None, reason: str = "") -> ApiKey:
    """An operator's reason on an already-disabled key survives the owner disabling it again."""
    api_key = ApiKey.objects.select_for_update().get(pk=api_key.pk)
    locked = not api_key.is_enabled and api_key.disabled_reason not in ("", OWNER_DISABLED)
    if not (locked and reason == OWNER_DISABLED):
        api_key.disabled_reason = reason[:64]
    api_key.is_enabled = False
    api_key.save(update_fields=["is_enabled", "disabled_reason"])
    _audit(api_key, ApiKeyAuditEvent.Action.DISABLED, actor, reason)
    worker_connections_close_on_commit(user_id=api_key.user_id)
    return api_key


@transaction.atomic
def api_key_enable(*, api_key: ApiKey, actor: User | None, reason: str = "") -> ApiKey:
    """Raises ApiKeyLocked when the owner re-enables a key disabled by someone else (an operator)."""
    api_key = ApiKey.objects.select_for_update().get(pk=api_key.pk)
    is_owner = actor is not None and actor.pk == api_key.user_id and not actor.is_staff
    if is_owner and api_key.disabled_reason not in ("", OWNER_DISABLED):
        raise ApiKeyLocked(api_key.disabled_reason)
    api_key.is_enabled = True
    api_key.disabled_reason = ""
    api_key.save(update_fields=["is_enabled", "disabled_reason"])
    _audit(api_key, ApiKeyAuditEvent.Action.ENABLED, actor, reason)
    return api_key


@transaction.atomic
def user_default_token_type_set(*, user: User, token_type: str) -> User:
    """The token type the account's requests pay with when they name none."""
    if token_type not in TokenTypePreference.values:
        raise ValueError(f"unknown token type {token_type!r}")
    User.objects.filter(pk=user.pk).update(default_token_type=token_type)
    user.default_token_type = token_type
    return user
