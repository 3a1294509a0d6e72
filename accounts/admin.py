from django.contrib import admin, messages

from accounts.models import ApiKey, ApiKeyAuditEvent, User
from accounts.services import api_key_disable, api_key_enable, worker_connections_close_on_commit
from sogni_platform.admin import ReadOnlyAdmin

OPERATOR_DISABLED = "disabled by operator"


@admin.register(User)
class UserAdmin(admin.ModelAdmin):
    """Accounts are created by signup or `issue_api_key` (both create the key), never here."""

    list_display = [
        "email",
        "is_active",
        "is_staff",
        "date_joined",
        "email_verified_at",
        "signup_address",
        "last_login",
    ]
    list_filter = ["is_active", "is_staff", "is_superuser", ("email_verified_at", admin.EmptyFieldListFilter)]
    search_fields = ["email", "signup_address"]
    ordering = ["-date_joined"]
    fields = [
        "email",
        "is_active",
        "is_staff",
        "is_superuser",
        "groups",
        "default_token_type",
        "date_joined",
        "email_verified_at",
        "signup_address",
        "last_login",
    ]
    readonly_fields = ["date_joined", "email_verified_at", "signup_address", "last_login"]
    filter_horizontal = ["groups"]

    def has_add_permission(self, request):
        return False

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        if change and "is_active" in form.changed_data and not obj.is_active:
            worker_connections_close_on_commit(user_id=obj.pk)


class AuditEventInline(admin.TabularInline):
    model = ApiKeyAuditEvent
    fields = readonly_fields = ("created_at", "action", "actor", "reason")
    extra = 0
    can_delete = False
    ordering = ["-created_at"]

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    """Operators see the masked key and its state; the secret, its hash and the encrypted copy never render."""

    list_display = ["masked", "user", "is_enabled", "disabled_reason", "created_at", "rotated_at"]
    list_filter = ["is_enabled"]
    search_fields = ["user__email"]
    list_select_related = ["user"]
    fields = readonly_fields = ("masked", "user", "is_enabled", "disabled_reason", "created_at", "rotated_at")
    inlines = [AuditEventInline]
    actions = ["disable_keys", "enable_keys"]

    @admin.display(description="key")
    def masked(self, api_key: ApiKey) -> str:
        return api_key.masked

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False  # a read-only page; the two actions below are the only writes

    def has_toggle_permission(self, request) -> bool:
        return request.user.has_perm("accounts.change_apikey")

    @admin.action(description="Disable selected API keys", permissions=["toggle"])
    def disable_keys(self, request, queryset):
        for api_key in queryset:
            api_key_disable(api_key=api_key, actor=request.user, reason=OPERATOR_DISABLED)
        self.message_user(request, f"Disabled {len(queryset)} key(s).", messages.SUCCESS)

    @admin.action(description="Enable selected API keys", permissions=["toggle"])
    def enable_keys(self, request, queryset):
        for api_key in queryset:
            api_key_enable(api_key=api_key, actor=request.user, reason="enabled by operator")
        self.message_user(request, f"Enabled {len(queryset)} key(s).", messages.SUCCESS)


@admin.register(ApiKeyAuditEvent)
class ApiKeyAuditEventAdmin(ReadOnlyAdmin):
    list_display = fields = ("created_at", "action", "api_key", "actor", "reason")
    list_filter = ["action"]
    search_fields = ["api_key__user__email", "actor__email"]
    list_select_related = ["api_key__user", "actor"]
    date_hierarchy = "created_at"
