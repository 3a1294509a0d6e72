import time
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Count
from django.utils import timezone

from inference.models import LlmModel, Worker
from sogni_platform.prepared import PreparedGet


def model_list() -> list[LlmModel]:
    return list(LlmModel.objects.filter(enabled=True))


_enabled_model = PreparedGet(lambda model_id: LlmModel.objects.filter(id=model_id, enabled=True))


def model_get(*, model_id: str) -> LlmModel | None:
    return _enabled_model.get(model_id)


def worker_fresh_since() -> datetime:
    """Workers whose last heartbeat is older than this are treated as gone (3 missed intervals)."""
    return timezone.now() - timedelta(seconds=3 * settings.WORKER_HEARTBEAT_SECONDS)


def _online_workers():
    return Worker.objects.filter(status=Worker.Status.ONLINE, last_heartbeat__gte=worker_fresh_since())


def online_worker_counts() -> dict[str, int]:
    """Model id → number of online workers serving it (models without one are absent)."""
    rows = (
        _online_workers()
        .filter(served_models__isnull=False)
        .values("served_models")
        .annotate(count=Count("id", distinct=True))
    )
    return {row["served_models"]: row["count"] for row in rows}


def model_has_online_worker(*, model_id: str) -> bool:
    return _online_workers().filter(served_models=model_id).exists()


# Model id (None: the default) → (monotonic expiry, enabled model). Only models found are kept, so
# its size is the catalog's; rows are never changed in place by their readers.
_resolved: dict[str | None, tuple[float, LlmModel]] = {}


def model_resolve(*, model_id: str | None) -> LlmModel | None:
    """The enabled model a request names; with none named, the default of this mode. Every chat request
    asks, so the answer is reused for MODEL_CACHE_SECONDS (a model saved in this process is read anew)."""
    now = time.monotonic()
    cached = _resolved.get(model_id)
    if cached is not None and cached[0] > now:
        return cached[1]
    if model_id is not None:
        model = model_get(model_id=model_id)
    else:
        default_flag = "is_embedded_default" if settings.EMBEDDED else "is_default"
        model = LlmModel.objects.filter(enabled=True, **{default_flag: True}).first()
    if model is not None and settings.MODEL_CACHE_SECONDS > 0:
        _resolved[model_id] = (now + settings.MODEL_CACHE_SECONDS, model)
    return model


def models_resolved_forget(**kwargs) -> None:
    """A model changed: read every model anew (post_save and post_delete receiver)."""
    _resolved.clear()
