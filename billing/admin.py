"""Operators' view of money: wallets and the ledger read-only, adjustments through a form, the SOGNI rate."""

import uuid

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from billing.forms import WalletAdjustForm
from billing.models import AccountDebt, Hold, LedgerEntry, SogniRate, StripeEvent, TopUp, Wallet
from billing.services.adjustments import AdjustmentRejected, wallet_adjust
from sogni_platform.admin import ReadOnlyAdmin


@admin.register(Wallet)
class WalletAdmin(ReadOnlyAdmin):
    list_display = ["user", "token_type", "balance", "held", "available", "updated_at", "adjust_link"]
    list_filter = ["token_type"]
    search_fields = ["user__email"]
    actions = ["adjust_balance"]

    @admin.display(description="available")
    def available(self, wallet):
        return wallet.available

    @admin.display(description="")
    def adjust_link(self, wallet):
        return format_html('<a href="{}">Adjust balance</a>', reverse("admin:billing_wallet_adjust", args=[wallet.pk]))

    @admin.action(description="Adjust balance (one wallet)")
    def adjust_balance(self, request, queryset):
        if queryset.count() != 1:
            self.message_user(request, "Select exactly one wallet to adjust.", messages.WARNING)
            return None
        return redirect("admin:billing_wallet_adjust", queryset.get().pk)

    def get_urls(self):
        view = self.admin_site.admin_view(self.adjust_view)
        return [path("<int:wallet_id>/adjust/", view, name="billing_wallet_adjust"), *super().get_urls()]

    def adjust_view(self, request, wallet_id: int):
        if not request.user.is_superuser and not request.user.has_perm("billing.change_wallet"):
            raise PermissionDenied
        wallet = get_object_or_404(Wallet, pk=wallet_id)
        form = WalletAdjustForm(request.POST or None, initial={"key": uuid.uuid4().hex})
        if request.method == "POST" and form.is_valid():
            try:
                entry = wallet_adjust(
                    wallet=wallet,
                    amount=form.cleaned_data["amount"],
                    reason=form.cleaned_data["reason"],
                    operator=request.user,
                    key=form.cleaned_data["key"],
                )
            except AdjustmentRejected as error:
                form.add_error(None, str(error))
            else:
                self.message_user(
                    request, f"Adjusted {wallet}: {entry.amount:+f}, balance now {entry.balance_after:f}."
                )
                return redirect("admin:billing_wallet_changelist")
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": f"Adjust balance: {wallet}",
            "wallet": wallet,
            "form": form,
        }
        return TemplateResponse(request, "admin/billing/wallet_adjust.html", context)


@admin.register(LedgerEntry)
class LedgerEntryAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "wallet", "kind", "amount", "held_change", "balance_after", "held_after", "job_id"]
    list_filter = ["kind", "wallet__token_type"]
    search_fields = ["wallet__user__email", "job_id", "idempotency_key", "stripe_event_id"]
    list_select_related = ["wallet__user"]


@admin.register(Hold)
class HoldAdmin(ReadOnlyAdmin):
    list_display = ["job_id", "wallet", "status", "amount", "charged", "reward", "created_at", "closed_at"]
    list_filter = ["status"]
    search_fields = ["job_id", "wallet__user__email"]


@admin.register(SogniRate)
class SogniRateAdmin(admin.ModelAdmin):
    """Rates are history: operators add a new row rather than edit one."""

    list_display = ["usd_per_sogni", "effective_from", "set_by", "note"]
    fields = ["usd_per_sogni", "effective_from", "note"]

    def has_change_permission(self, request, obj=None):
        return obj is None and super().has_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None):
        return False

    def save_model(self, request, obj, form, change):
        obj.set_by = request.user
        super().save_model(request, obj, form, change)


@admin.register(StripeEvent)
class StripeEventAdmin(ReadOnlyAdmin):
    list_display = ["id", "type", "outcome", "livemode", "received_at"]
    list_filter = ["type"]
    search_fields = ["id"]


@admin.register(TopUp)
class TopUpAdmin(ReadOnlyAdmin):
    list_display = [
        "session_id",
        "user",
        "usd_cents",
        "spark",
        "spark_refunded",
        "spark_disputed",
        "status",
        "created_at",
    ]
    list_filter = ["status"]
    search_fields = ["session_id", "payment_intent", "user__email"]


@admin.register(AccountDebt)
class AccountDebtAdmin(admin.ModelAdmin):
    list_display = ["user", "amount", "token_type", "reason", "created_at", "resolved_at"]
    list_filter = ["resolved_at"]
    search_fields = ["user__email", "stripe_event_id"]
    readonly_fields = ["user", "token_type", "amount", "reason", "stripe_event_id", "created_at"]

    def has_add_permission(self, request):
        return False
