"""GET /metrics: Prometheus text format, for operators (staff session) or `Authorization: Bearer <METRICS_TOKEN>`."""

import hmac
import logging
from collections import defaultdict

from django.apps import apps
from django.conf import settings
from django.core.exceptions import FieldDoesNotExist
from django.db.models import Count
from django.http import HttpResponse
from django.views.decorators.http import require_GET
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from sogni_platform.exceptions import ApiError, InvalidApiKey, error_response
from sogni_platform.metrics import TTFT_BUCKETS, metrics_counters, metrics_gauges

logger = logging.getLogger(__name__)


def _model_or_none(label: str):
    try:
        return apps.get_model(label)
    except LookupError:
        return None


def _has_field(model, name: str) -> bool:
    try:
        model._meta.get_field(name)
        return True
    except FieldDoesNotExist:
        return False


def _count_by_model(model, **filters) -> list[tuple[tuple[str, ...], float]]:
    field = next((name for name in ("model_id", "model") if _has_field(model, name)), None)
    if field is None:
        return [((), float(model.objects.filter(**filters).count()))]
    rows = model.objects.filter(**filters).values_list(field).annotate(n=Count("pk")).order_by()
    return [((str(model_id),), float(n)) for model_id, n in rows]


def _default_holds_open():
    hold = _model_or_none("billing.Hold")
    return _count_by_model(hold, status="open") if hold is not None else []


def _default_queue_depth():
    job = _model_or_none("inference.Job")
    return _count_by_model(job, status="queued") if job is not None and _has_field(job, "status") else []


def _default_workers_online():
    worker = _model_or_none("inference.Worker")
    if worker is None:
        return []
    for name, value in (("status", "online"), ("is_online", True), ("online", True)):
        if _has_field(worker, name):
            return [((), float(worker.objects.filter(**{name: value}).count()))]
    return []


# Used until the owning app registers a gauge of the same name with metrics_gauge_register.
DEFAULT_GAUGES = {
    "sogni_queue_depth": ("Jobs waiting for a worker, per model.", ("model",), _default_queue_depth),
    "sogni_workers_online": ("Workers connected and serving.", (), _default_workers_online),
    "sogni_holds_open": ("Balance holds not yet settled or released, per model.", ("model",), _default_holds_open),
}


class PlatformCollector:
    def collect(self):
        counters = metrics_counters()
        yield from self._counters(counters)
        yield self._ttft(counters)
        yield from self._gauges()

    @staticmethod
    def _counters(counters):
        requests = CounterMetricFamily(
            "sogni_http_requests", "HTTP responses by method, route and status.", labels=["method", "route", "status"]
        )
        errors = CounterMetricFamily("sogni_http_errors", "HTTP responses with status >= 400.", labels=["status"])
        tokens = CounterMetricFamily("sogni_tokens", "Tokens processed, by model and kind.", labels=["model", "kind"])
        jobs = CounterMetricFamily("sogni_jobs", "Finished jobs, by model and outcome.", labels=["model", "outcome"])
        error_totals: dict[str, float] = defaultdict(float)
        for name, labels, value in counters:
            if name == "http_requests":
                requests.add_metric([labels["method"], labels["route"], labels["status"]], value)
                if int(labels["status"]) >= 400:
                    error_totals[labels["status"]] += value
            elif name == "tokens":
                tokens.add_metric([labels["model"], labels["kind"]], value)
            elif name == "jobs":
                jobs.add_metric([labels["model"], labels["outcome"]], value)
        for status, value in sorted(error_totals.items()):
            errors.add_metric([status], value)
        return [requests, errors, tokens, jobs]

    @staticmethod
    def _ttft(counters):
        family = HistogramMetricFamily(
            "sogni_ttft_seconds", "Time from request to first token, per model.", labels=["model"]
        )
        per_model: dict[str, dict] = defaultdict(lambda: {"buckets": defaultdict(float), "sum": 0.0, "count": 0.0})
        for name, labels, value in counters:
            if name == "ttft_bucket":
                per_model[labels["model"]]["buckets"][labels["le"]] += value
            elif name == "ttft_sum":
                per_model[labels["model"]]["sum"] += value
            elif name == "ttft_count":
                per_model[labels["model"]]["count"] += value
        for model, data in sorted(per_model.items()):
            cumulative, buckets = 0.0, []
            for bound in TTFT_BUCKETS:
                cumulative += data["buckets"].get(str(bound), 0.0)
                buckets.append((str(bound), cumulative))
            buckets.append(("+Inf", cumulative + data["buckets"].get("+Inf", 0.0)))
            family.add_metric([model], buckets, data["sum"])
        return family

    @staticmethod
    def _gauges():
        registered = {gauge.name: gauge for gauge in metrics_gauges()}
        specs = [(g.name, g.documentation, g.labelnames, g.callback) for g in registered.values()]
        specs += [(name, *spec) for name, spec in DEFAULT_GAUGES.items() if name not in registered]
        for name, documentation, labelnames, callback in specs:
            family = GaugeMetricFamily(name, documentation, labels=list(labelnames))
            try:
                for label_values, value in callback():
                    family.add_metric(list(label_values), value)
            except Exception:
                logger.exception("metrics: gauge %s failed", name)
                continue
            yield family


def _authorized(request) -> ApiError | None:
    token = settings.METRICS_TOKEN
    authorization = request.headers.get("Authorization", "")
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        if token and hmac.compare_digest(value.strip().encode(), token.encode()):
            return None
        return InvalidApiKey("Invalid metrics token.", code="invalid_metrics_token")
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated:
        if user.is_active and user.is_staff:
            return None
        return ApiError("Metrics are for operators only.", status=403, type="permission_error", code="forbidden")
    return InvalidApiKey("Metrics need an operator session or `Authorization: Bearer <METRICS_TOKEN>`.", code=None)


@require_GET
def metrics_view(request):
    denied = _authorized(request)
    if denied is not None:
        return error_response(denied)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(PlatformCollector())
    try:
        body = generate_latest(registry)
    except Exception:
        logger.exception("metrics: scrape failed")
        return error_response(ApiError("Metrics are unavailable.", status=503, type="service_unavailable"))
    return HttpResponse(body, content_type=CONTENT_TYPE_LATEST)
