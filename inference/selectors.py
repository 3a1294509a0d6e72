import functools
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection
from django.utils import timezone

from inference.models import LlmModel, Worker
from sogni_platform.recent import RecentRows


def model_list() -> list[LlmModel]:
    return list(LlmModel.objects.filter(enabled=True))


def model_get(*, model_id: str) -> LlmModel | None:
    return LlmModel.objects.filter(id=model_id, enabled=True).first()


def worker_fresh_since() -> datetime:
    """Workers whose last heartbeat is older than this are treated as gone (3 missed intervals)."""
    return timezone.now() - timedelta(seconds=3 * settings.WORKER_HEARTBEAT_SECONDS)


# The one definition of a worker that takes jobs, for a worker row aliased `w`: online, heard from
# lately, not paused (a banned one is not online). Dispatch adds "has a free slot"; /v1/models counts
# these. Raw SQL, as dispatch's statements are. Parameters: worker_eligible_params(now).
WORKER_ELIGIBLE_SQL = "w.status = %s AND w.last_heartbeat >= %s AND (w.paused_until IS NULL OR w.paused_until <= %s)"


def worker_eligible_params(now: datetime) -> list:
    adapt = connection.ops.adapt_datetimefield_value
    return [Worker.Status.ONLINE, adapt(worker_fresh_since()), adapt(now)]


@functools.cache
def _eligible_serving_sql(select: str) -> str:
    worker, served = Worker._meta.db_table, Worker.served_models.through._meta.db_table
    return (
        f"SELECT {select} FROM {worker} w JOIN {served} m ON m.worker_id = w.id "  # noqa: S608 - names from model meta
        f"WHERE {WORKER_ELIGIBLE_SQL}"
    )


def online_worker_counts() -> dict[str, int]:
    """Model id → number of workers taking its jobs (models without one are absent)."""
    with connection.cursor() as cursor:
        sql = _eligible_serving_sql("m.llmmodel_id, COUNT(DISTINCT w.id)") + " GROUP BY m.llmmodel_id"
        cursor.execute(sql, worker_eligible_params(timezone.now()))
        return dict(cursor.fetchall())


def online_worker_features() -> dict[str, set[str]]:
    """Model id → the job features (protocol hello.features) some worker taking its jobs announced
    (models without a worker are absent)."""
    with connection.cursor() as cursor:
        cursor.execute(
            _eligible_serving_sql("DISTINCT m.llmmodel_id, w.features"), worker_eligible_params(timezone.now())
        )
        features: dict[str, set[str]] = {}
        for model_id, names in cursor.fetchall():
            features.setdefault(model_id, set()).update(names.split())
        return features


def model_worker_features(*, model_id: str) -> set[str] | None:
    """The job features some worker taking `model_id`'s jobs announced; None when none is online."""
    with connection.cursor() as cursor:
        sql = _eligible_serving_sql("DISTINCT w.features") + " AND m.llmmodel_id = %s"
        cursor.execute(sql, [*worker_eligible_params(timezone.now()), model_id])
        rows = cursor.fetchall()
    return {name for (names,) in rows for name in names.split()} if rows else None


def model_has_online_worker(*, model_id: str) -> bool:
    with connection.cursor() as cursor:
        sql = _eligible_serving_sql("1") + " AND m.llmmodel_id = %s LIMIT 1"
        cursor.execute(sql, [*worker_eligible_params(timezone.now()), model_id])
        return cursor.fetchone() is not None


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
