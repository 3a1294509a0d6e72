"""Dashboard actions for the wallet panel: thin POST views that call a service and say what happened."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST

from accounts.models import TokenTypePreference
from accounts.services import user_default_token_type_set
from accounts.verification import email_verification_user, starter_grant_label
from billing.checkout import PACKAGES, CheckoutUnavailable, checkout_session_create
from billing.selectors import next_daily_bonus_at
from billing.services.grants import DailyBonusAlreadyClaimed, DailyBonusUnverified, account_verify, daily_bonus_claim
from billing.templatetags.billing_tags import until

TAG = "billing"


def _back(request):
    target = request.POST.get("next") or request.GET.get("next")
    if target and url_has_allowed_host_and_scheme(target, {request.get_host()}, require_https=request.is_secure()):
        return redirect(target)
    return redirect("dashboard:index")


@login_required
@require_POST
def daily_bonus(request):
    try:
        entry = daily_bonus_claim(user=request.user)
    except DailyBonusAlreadyClaimed as refused:
        messages.error(
            request,
            f"Already claimed today. Next daily bonus at {refused.next_claim_at:%Y-%m-%d %H:%M} UTC "
            f"(in {until(refused.next_claim_at)}).",
            extra_tags=TAG,
        )
    except DailyBonusUnverified as refused:
        messages.error(request, str(refused), extra_tags=TAG)
    else:
        messages.success(
            request,
            f"Daily bonus claimed: +{entry.amount.normalize():f} Spark. Next one at "
            f"{next_daily_bonus_at():%Y-%m-%d %H:%M} UTC.",
            extra_tags=TAG,
        )
    return _back(request)


@login_required
@require_POST
def checkout(request):
    package = PACKAGES.get(int(request.POST["usd"])) if request.POST.get("usd", "").isdigit() else None
    if package is None:
        messages.error(request, "Choose one of the Spark packages.", extra_tags=TAG)
        return _back(request)
    wallet_url = request.build_absolute_uri(reverse("dashboard:index"))
    try:
        url = checkout_session_create(
            user=request.user,
            package=package,
            success_url=f"{wallet_url}?checkout=success",
            cancel_url=f"{wallet_url}?checkout=cancelled",
        )
    except CheckoutUnavailable as error:
        messages.error(request, str(error), extra_tags=TAG)
        return _back(request)
    return redirect(url)


@login_required
@require_POST
def token_type(request):
    value = request.POST.get("token_type", "")
    if value not in TokenTypePreference.values:
        messages.error(request, "Choose Auto, Spark or SOGNI.", extra_tags=TAG)
    else:
        user_default_token_type_set(user=request.user, token_type=value)
        label = TokenTypePreference(value).label
        messages.success(request, f"Requests without a token type now pay with: {label}.", extra_tags=TAG)
    return _back(request)


@never_cache
def email_verify(request, token: str):
    """The emailed link: GET, so that opening it is enough; opening it again credits nothing more. Here,
    not in accounts, because it credits the starter grant (billing depends on accounts, not back)."""
    user = email_verification_user(token=token)
    if user is None:
        return render(request, "accounts/email_verify.html", {"verified": False}, status=400)
    first = account_verify(user=user)
    context = {"verified": True, "first": first, "email": user.email, "grant": starter_grant_label()}
    return render(request, "accounts/email_verify.html", context)
