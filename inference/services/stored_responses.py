"""Stored Responses API answers: written when a response with `store` ends, read by id for their owner
only, deleted by their owner or once RESPONSES_RETENTION_DAYS have passed (0: kept until deleted)."""

import re
from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from inference.models import StoredResponse

# What an id can be (resp_ and hex); anything else names no stored response and is not looked up
# (a NUL, for one, cannot even be sent to PostgreSQL).
RESPONSE_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


def _kept():
    """Stored responses still within the retention period."""
    rows = StoredResponse.objects.all()
    if settings.RESPONSES_RETENTION_DAYS > 0:
        rows = rows.filter(created_at__gte=timezone.now() - timedelta(days=settings.RESPONSES_RETENTION_DAYS))
    return rows


def stored_response_save(*, user_id: int, response: dict, conversation: list[dict]) -> StoredResponse:
    return StoredResponse.objects.create(
        id=response["id"], user_id=user_id, response=response, conversation=conversation
    )


def stored_response_get(*, user_id: int, response_id: str) -> StoredResponse | None:
    """The owner's stored response; someone else's and an expired one are as unknown as a wrong id."""
    if not RESPONSE_ID.fullmatch(response_id):
        return None
    return _kept().filter(user_id=user_id, id=response_id).first()


def stored_response_delete(*, user_id: int, response_id: str) -> bool:
    if not RESPONSE_ID.fullmatch(response_id):
        return False
    deleted, _ = _kept().filter(user_id=user_id, id=response_id).delete()
    return bool(deleted)


def stored_responses_purge() -> int:
    """Delete what the retention period no longer keeps; the number deleted."""
    if settings.RESPONSES_RETENTION_DAYS <= 0:
        return 0
    cutoff = timezone.now() - timedelta(days=settings.RESPONSES_RETENTION_DAYS)
    deleted, _ = StoredResponse.objects.filter(created_at__lt=cutoff).delete()
    return deleted
