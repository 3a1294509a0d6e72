from django.contrib import admin

from ratelimits.models import AccountLimits


@admin.register(AccountLimits)
class AccountLimitsAdmin(admin.ModelAdmin):
    list_display = ["user", "requests_per_minute", "tokens_per_minute", "note", "updated_at"]
    search_fields = ["user__email"]
    raw_id_fields = ["user"]
    readonly_fields = ["updated_at"]
