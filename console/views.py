"""The operator console, /console/: staff only, server-rendered. Actions are POSTs (CSRF) calling the
owning app's service: worker_ban, api_key_disable / api_key_enable, wallet_adjust."""

import logging
import uuid
from collections.abc import Callable
from functools import wraps
from typing import Any

from django.contrib import messages
from django.contrib.admin.views.decorators import staff_member_required
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_POST

from accounts.models import ApiKey, TokenType, User
from accounts.services import api_key_disable, api_key_enable
from billing.forms import WalletAdjustForm
from billing.models import ZERO, Hold, LedgerEntry, Wallet
from billing.pricing import sogni_usd_rate
from billing.services.adjustments import AdjustmentRejected, wallet_adjust
from billing.services.ledger import wallets_ensure
from billing.templatetags.billing_tags import usd
from console import selectors
from console.forms import JobFilterForm, KeyDisableForm
from dashboard.charts import Chart, Series, bar_chart
from inference.models import Job, LlmModel, OwnerTrust, Worker
from inference.services import worker_ban
from inference.usage.selectors import job_cost, job_hold, job_timing, worker_state

logger = logging.getLogger(__name__)


View = Callable[..., HttpResponse]


def operator_only(view: View) -> View:
    """Staff only (others are sent to the admin login); every console page and action goes through this."""
    return staff_member_required(view)


def needs_perm(perm: str) -> Callable[[View], View]:
    def decorator(view: View) -> View:
        @wraps(view)
        def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if not request.user.has_perm(perm):
                raise PermissionDenied
            return view(request, *args, **kwargs)

        return wrapped

    return decorator


def _operator(request: HttpRequest) -> User:
    user = request.user
    assert isinstance(user, User)  # operator_only lets only staff through
    return user


def _back(request: HttpRequest, fallback: str) -> HttpResponse:
    target = request.POST.get("next") or ""
    if url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}, require_https=request.is_secure()):
        return redirect(target)
    return redirect(fallback)


@operator_only
@require_GET
def overview(request: HttpRequest) -> HttpResponse:
    context = {
        "overview": selectors.overview(),
        "statuses": Job.Status.values,
        "revenue_chart": _money_chart(selectors.money_by_day(days=14)),
    }
    return render(request, "console/overview.html", context)


@operator_only
@require_GET
def workers(request: HttpRequest) -> HttpResponse:
    state = request.GET.get("state", "")
    context = {"rows": selectors.worker_rows(state=state), "state": state}
    return render(request, "console/workers.html", context)


@operator_only
@needs_perm("inference.change_worker")
@require_POST
def worker_ban_view(request: HttpRequest, worker_id: int) -> HttpResponse:
    worker = get_object_or_404(Worker, pk=worker_id)
    if worker.status == Worker.Status.BANNED:
        messages.info(request, f"Worker {worker.name} was already banned.")
    else:
        worker_ban(worker=worker)
        logger.warning("worker %s (%s of %s) banned by operator %s", worker.pk, worker.name, worker.owner, request.user)
        messages.success(
            request,
            f"Worker {worker.name} is banned with every worker of {worker.owner}: their connections are closed, "
            "they get no jobs and no new worker name of that account may connect.",
        )
    return _back(request, reverse("console:workers"))


@operator_only
@require_GET
def jobs(request: HttpRequest) -> HttpResponse:
    form = JobFilterForm(request.GET or None, auto_id="f-%s")
    filters = form.cleaned_data if form.is_valid() else {}
    queryset = selectors.jobs_filtered(
        status=filters.get("status", ""),
        model=filters.get("model", ""),
        user_email=filters.get("user", ""),
        worker=filters.get("worker", ""),
    )
    page = Paginator(queryset, 50).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    context = {
        "form": form,
        "page": page,
        "query": query.urlencode(),
        "models": LlmModel.objects.values_list("id", flat=True),
    }
    return render(request, "console/jobs.html", context)


@operator_only
@require_GET
def job_detail(request: HttpRequest, public_id: str) -> HttpResponse:
    job = selectors.job_detail(public_id=public_id)
    if job is None:
        raise Http404("No such job")
    hold = job_hold(job)
    timing = job_timing(job)
    steps = [
        ("Created", job.created_at, None),
        ("Assigned to a worker", job.assigned_at, timing.queue_ms),
        ("First token", job.first_token_at, timing.ttft_ms),
        ("Finished", job.finished_at, timing.latency_ms),
    ]
    entries = LedgerEntry.objects.filter(job_id__in=[job.public_id, str(job.id)]).select_related("wallet__user")
    context = {
        "job": job,
        "hold": hold,
        "cost": job_cost(hold),
        "timing": timing,
        "steps": steps,
        "entries": entries.order_by("created_at", "id"),
        "worker_state": worker_state(job.worker) if job.worker else None,
    }
    return render(request, "console/job_detail.html", context)


def _money_chart(days: list[selectors.MoneyDay]) -> Chart:
    return bar_chart(
        title=f"Revenue (charges) and payouts (worker rewards) per day in USD, last {len(days)} days",
        labels=[f"{d.day:%b} {d.day.day}" for d in days],
        series=[
            Series(name="Revenue (USD)", values=[d.revenue_usd for d in days]),
            Series(name="Payouts (USD)", values=[d.payouts_usd for d in days]),
        ],
        fmt=usd,
        label_every=5 if len(days) > 14 else 2,
    )


@operator_only
@require_GET
def revenue(request: HttpRequest) -> HttpResponse:
    days = selectors.money_by_day(days=30)
    try:
        rate = sogni_usd_rate()
    except LookupError:
        rate = None
    context = {
        "days": list(reversed(days)),
        "chart": _money_chart(days),
        "total_revenue": sum((d.revenue_usd for d in days), ZERO),
        "total_payouts": sum((d.payouts_usd for d in days), ZERO),
        "total_payouts_sogni": sum((d.payouts_sogni for d in days), ZERO),
        "sogni_rate": rate,
        "open_holds": Hold.objects.filter(status=Hold.Status.OPEN).count(),
    }
    return render(request, "console/revenue.html", context)


@operator_only
@require_GET
def accounts(request: HttpRequest) -> HttpResponse:
    query = request.GET.get("q", "")
    return render(request, "console/accounts.html", {"q": query, "users": selectors.accounts_search(query=query)})


@operator_only
@require_GET
def account_detail(request: HttpRequest, user_id: int) -> HttpResponse:
    account = get_object_or_404(User, pk=user_id)
    wallets = Wallet.objects.filter(user=account).order_by("token_type")
    context = {
        "account": account,
        "api_key": ApiKey.objects.filter(user=account).first(),
        "wallets": wallets,
        "adjust_key": uuid.uuid4().hex,
        "disable_form": KeyDisableForm(),
        "workers": Worker.objects.filter(owner=account).order_by("name"),
        "owner_trust": OwnerTrust.objects.filter(owner=account).first(),
        "now": timezone.now(),
        "recent_jobs": Job.objects.filter(user=account).select_related("model").order_by("-created_at")[:10],
        "token_types": TokenType.choices,
    }
    return render(request, "console/account_detail.html", context)


@operator_only
@needs_perm("accounts.change_apikey")
@require_POST
def key_disable_view(request: HttpRequest, user_id: int) -> HttpResponse:
    api_key = get_object_or_404(ApiKey, user_id=user_id)
    form = KeyDisableForm(request.POST)
    reason = (form.cleaned_data["reason"] if form.is_valid() else "").strip() or "operator"
    api_key_disable(api_key=api_key, actor=_operator(request), reason=reason)
    messages.success(request, f"The API key of {api_key.user} is disabled ({reason}).")
    return redirect("console:account", user_id=user_id)


@operator_only
@needs_perm("accounts.change_apikey")
@require_POST
def key_enable_view(request: HttpRequest, user_id: int) -> HttpResponse:
    api_key = get_object_or_404(ApiKey, user_id=user_id)
    api_key_enable(api_key=api_key, actor=_operator(request), reason="operator console")
    messages.success(request, f"The API key of {api_key.user} is enabled.")
    return redirect("console:account", user_id=user_id)


@operator_only
@needs_perm("billing.change_wallet")
@require_POST
def wallet_adjust_view(request: HttpRequest, user_id: int, token_type: str) -> HttpResponse:
    account = get_object_or_404(User, pk=user_id)
    if token_type not in TokenType.values:
        raise Http404("No such wallet")
    form = WalletAdjustForm(request.POST)
    if not form.is_valid():
        problems = "; ".join(f"{name}: {' '.join(map(str, errors))}" for name, errors in form.errors.items())
        messages.error(request, f"Not adjusted: {problems}")
        return redirect("console:account", user_id=user_id)
    wallet = wallets_ensure(user=account)[token_type]
    try:
        entry = wallet_adjust(
            wallet=wallet,
            amount=form.cleaned_data["amount"],
            reason=form.cleaned_data["reason"],
            operator=_operator(request),
            key=form.cleaned_data["key"],
        )
    except AdjustmentRejected as error:
        messages.error(request, f"Not adjusted: {error}")
    else:
        messages.success(
            request,
            f"Adjusted {account}'s {wallet.get_token_type_display()} wallet by {entry.amount.normalize():+f}; "
            f"balance now {entry.balance_after.normalize():f}.",
        )
    return redirect("console:account", user_id=user_id)
