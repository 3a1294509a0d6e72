"""A user's own pages: the dashboard (account, wallet panel, API key, how to call the API), Usage (chart,
tables, CSV) and Workers (the workers they run and what they earned)."""

import csv
import datetime
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from accounts.models import User
from accounts.selectors import api_key_for_user
from accounts.verification import VerificationResendThrottled, email_verification_send, starter_grant_label
from billing.templatetags.billing_tags import usd
from dashboard.charts import Chart, Series, bar_chart
from inference.selectors import model_list
from inference.usage import selectors
from inference.usage.selectors import UsageRow


def _user(request: HttpRequest) -> User:
    user = request.user
    assert isinstance(user, User)  # login_required
    return user


def _first_model_id() -> str:
    model = next(iter(model_list()), None)
    return model.id if model is not None else "MODEL_ID"


def _index(request: HttpRequest, status: int = 200) -> HttpResponse:
    context = {
        "api_key": api_key_for_user(user=request.user),
        "base_url": request.build_absolute_uri("/v1"),
        "example_model": _first_model_id(),
        "starter_grant": starter_grant_label(),
    }
    return render(request, "dashboard/index.html", context, status=status)


@login_required
def index(request: HttpRequest) -> HttpResponse:
    return _index(request)


@login_required
@require_POST
def email_verification_resend(request: HttpRequest) -> HttpResponse:
    user = _user(request)
    if user.email_verified_at is not None:
        messages.success(request, "Your email address is already verified.")
        return redirect("dashboard:index")
    try:
        sent = email_verification_send(user=user, site_url=request.build_absolute_uri("/"))
    except VerificationResendThrottled as throttled:
        messages.error(request, str(throttled))
        page = _index(request, status=429)
        page["Retry-After"] = str(throttled.retry_after)
        return page
    if sent:
        messages.success(request, f"We sent a new verification link to {user.email}.")
    else:
        messages.error(request, "The email could not be sent just now. Please try again in a few minutes.")
    return redirect("dashboard:index")


METRICS = {"tokens": "Tokens", "requests": "Requests", "spend_usd": "Spend (USD)"}


def _fmt(metric: str) -> Callable[[Any], str]:
    if metric == "spend_usd":
        return usd
    return lambda value: f"{value:,}"


def usage_chart(rows: list[UsageRow], *, days: list[datetime.date], metric: str) -> Chart:
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
def usage(request: HttpRequest) -> HttpResponse:
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
    return render(request, "dashboard/usage.html", context)


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
def usage_export(request: HttpRequest) -> HttpResponse:
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
def workers(request: HttpRequest) -> HttpResponse:
    context = {
        "workers": selectors.my_workers(user=request.user),
        "earnings": selectors.earnings(user=request.user),
    }
    return render(request, "dashboard/workers.html", context)
