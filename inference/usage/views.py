"""A user's own pages: Usage (chart, tables, CSV) and Workers (the workers they run and what they earned)."""

import csv
from decimal import Decimal

from django.contrib.auth.decorators import login_required
from django.http import HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from billing.templatetags.billing_tags import usd
from inference.usage import selectors
from inference.usage.charts import Series, bar_chart

METRICS = {"tokens": "Tokens", "requests": "Requests", "spend_usd": "Spend (USD)"}


def _fmt(metric: str):
    if metric == "spend_usd":
        return usd
    return lambda value: f"{value:,}"


def usage_chart(rows, *, days, metric: str):
    matrix = selectors.usage_matrix(rows, days=days, metric=metric)
    return bar_chart(
        title=f"{METRICS[metric]} per day, last {len(days)} days, by model",
        labels=[f"{day:%b} {day.day}" for day in days],
        series=[Series(name=model_id, values=values) for model_id, values in matrix.items()],
        stacked=True,
        fmt=_fmt(metric),
        label_every=5,
    )


@login_required
@require_GET
def usage(request):
    metric = request.GET.get("metric")
    metric = metric if metric in METRICS else "tokens"
    days = selectors.usage_days()
    rows = selectors.usage_rows(user=request.user)
    context = {
        "metric": metric,
        "metrics": METRICS.items(),
        "chart": usage_chart(rows, days=days, metric=metric),
        "by_day": [day for day in reversed(selectors.usage_by_day(rows, days=days)) if day.requests or day.spend_usd],
        "by_model": selectors.usage_by_model(rows),
        "total": selectors.usage_total(rows),
        "first_day": days[0],
        "last_day": days[-1],
    }
    return render(request, "usage/usage.html", context)


CSV_COLUMNS = [
    "date",
    "model",
    "requests",
    "prompt_tokens",
    "completion_tokens",
    "reasoning_tokens",
    "total_tokens",
    "spend_spark",
    "spend_sogni",
    "spend_usd",
]


def _plain(value: Decimal) -> str:
    text = f"{value.normalize():f}"
    return "0" if text in ("-0", "0") else text


@login_required
@require_GET
def usage_export(request):
    """One row per (UTC day, model) of the last 30 days, oldest first."""
    days = selectors.usage_days()
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="sogni-usage-{days[0]}-to-{days[-1]}.csv"'
    writer = csv.writer(response)
    writer.writerow(CSV_COLUMNS)
    for row in selectors.usage_rows(user=request.user):
        writer.writerow(
            [
                row.day.isoformat(),
                row.model_id,
                row.requests,
                row.prompt_tokens,
                row.completion_tokens,
                row.reasoning_tokens,
                row.total_tokens,
                _plain(row.spend["spark"]),
                _plain(row.spend["sogni"]),
                _plain(row.spend_usd),
            ]
        )
    return response


@login_required
@require_GET
def workers(request):
    context = {
        "workers": selectors.my_workers(user=request.user),
        "earnings": selectors.earnings(user=request.user),
    }
    return render(request, "usage/workers.html", context)
