from django.contrib.auth.password_validation import validate_password
from django.db import transaction
from django.utils import timezone

from accounts.keys import decrypt_key, encrypt_key, generate_key, hash_secret
from accounts.models import ApiKey, ApiKeyAuditEvent, User


@transaction.atomic
def user_signup(*, email: str, password: str) -> User:
    """Create an account with its API key. Callers validate the form; this re-checks the password."""
    user = User(email=User.objects.normalize_email(email).lower())
    validate_password(password, user)
    user.set_password(password)
    user.save()
    api_key_create(user=user)
    _signup_hooks(user)
    return user


def _signup_hooks(user: User) -> None:
    """Grants that come with a new account (billing's starter grant)."""
    try:
        from billing.services import starter_grant_credit
    except ImportError:
        return
    starter_grant_credit(user=user)


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
def api_key_reveal(*, api_key: ApiKey, actor: User) -> str:
    _audit(api_key, ApiKeyAuditEvent.Action.REVEALED, actor)
    return decrypt_key(api_key.encrypted_key)


@transaction.atomic
def api_key_regenerate(*, api_key: ApiKey, actor: User) -> str:
    """A new secret and lookup id; the old key stops authenticating at once."""
    api_key = ApiKey.objects.select_for_update().get(pk=api_key.pk)
    raw, parsed = generate_key()
    api_key.lookup_id = parsed.lookup_id
    api_key.secret_hash = hash_secret(parsed.secret)
    api_key.encrypted_key = encrypt_key(raw)
    api_key.rotated_at = timezone.now()
    api_key.save(update_fields=["lookup_id", "secret_hash", "encrypted_key", "rotated_at"])
    _audit(api_key, ApiKeyAuditEvent.Action.REGENERATED, actor)
    return raw


@transaction.atomic
def api_key_disable(*, api_key: ApiKey, actor: User | None, reason: str = "") -> ApiKey:
    api_key = ApiKey.objects.select_for_update().get(pk=api_key.pk)
    api_key.is_enabled = False
    api_key.disabled_reason = reason[:64]
    api_key.save(update_fields=["is_enabled", "disabled_reason"])
    _audit(api_key, ApiKeyAuditEvent.Action.DISABLED, actor, reason)
    return api_key


@transaction.atomic
def api_key_enable(*, api_key: ApiKey, actor: User | None, reason: str = "") -> ApiKey:
    api_key = ApiKey.objects.select_for_update().get(pk=api_key.pk)
    api_key.is_enabled = True
    api_key.disabled_reason = ""
    api_key.save(update_fields=["is_enabled", "disabled_reason"])
    _audit(api_key, ApiKeyAuditEvent.Action.ENABLED, actor, reason)
    return api_key
