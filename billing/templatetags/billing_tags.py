"""`{% load billing_tags %}{% billing_wallet as w %}`: what the wallet panel shows for request.user."""

import datetime
from decimal import Decimal

from django import template
from django.utils import timezone

from accounts.models import TokenTypePreference
from billing.checkout import PACKAGES, stripe_configured
from billing.selectors import daily_bonus_claimed_today, ledger_page, next_daily_bonus_at, wallet_views

register = template.Library()


def until(moment: datetime.datetime, *, now: datetime.datetime | None = None) -> str:
    """'3 h 05 min' from now until `moment`."""
    minutes = max(0, int((moment - (now or timezone.now())).total_seconds() + 59) // 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min"


@register.filter
def tokens(value: Decimal | None) -> str:
    """A token amount for people: exact, no trailing zeros, thousands separated."""
    if value is None:
        return "—"
    text = f"{value.normalize():,f}"
    return "0" if text in ("-0", "0") else text


@register.filter
def usd(value: Decimal | None) -> str:
    if value is None:
        return "—"
    return f"${value.quantize(Decimal('0.01')):,}" if abs(value) >= Decimal("0.01") or value == 0 else f"${value:.6f}"


@register.simple_tag(takes_context=True)
def billing_wallet(context) -> dict:
    request = context["request"]
    user = request.user
    now = timezone.now()
    next_claim = next_daily_bonus_at(now=now)
    return {
        "wallets": wallet_views(user=user),
        "claimed_today": daily_bonus_claimed_today(user=user, now=now),
        "next_claim_at": next_claim,
        "next_claim_in": until(next_claim, now=now),
        "page": ledger_page(user=user, page=request.GET.get("tx_page") or 1),
        "packages": sorted(PACKAGES.values(), key=lambda p: p.usd),
        "stripe_configured": stripe_configured(),
        "token_types": TokenTypePreference.choices,
        "default_token_type": user.default_token_type,
        "next": request.get_full_path(),
        "checkout_return": request.GET.get("checkout"),
    }
