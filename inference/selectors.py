from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Count
from django.utils import timezone

from inference.models import LlmModel, Worker
from sogni_platform.prepared import PreparedGet
from sogni_platform.recent import RecentRows


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


# Model id (None: the default) → enabled model; only models found are kept, so its size is the catalog's.
_resolved: RecentRows[LlmModel] = RecentRows("MODEL_CACHE_SECONDS")


def model_resolve(*, model_id: str | None) -> LlmModel | None:
    """The enabled model a request names; with none named, the default of this mode. Every chat request
    asks, so the answer is reused for MODEL_CACHE_SECONDS (a model saved in this process is read anew)."""
    return _resolved.get(model_id, lambda: _model_read(model_id))


def _model_read(model_id: str | None) -> LlmModel | None:
    if model_id is not None:
        return model_get(model_id=model_id)
    default_flag = "is_embedded_default" if settings.EMBEDDED else "is_default"
    return LlmModel.objects.filter(enabled=True, **{default_flag: True}).first()


def models_resolved_forget(**kwargs) -> None:
    """A model changed: read every model anew (post_save and post_delete receiver)."""
    _resolved.forget()
