"""Operators' view of the catalog, the worker registry and jobs (workers and jobs read-mostly)."""

from django.contrib import admin, messages

from inference.models import Job, LlmModel, Worker
from inference.services import worker_ban, worker_unban
from inference.services.trust import worker_unpause
from sogni_platform.admin import ReadOnlyAdmin


@admin.register(LlmModel)
class LlmModelAdmin(admin.ModelAdmin):
    list_display = ["id", "display_name", "enabled", "is_default", "is_embedded_default", "context_window"]
    list_filter = ["enabled"]
    search_fields = ["id", "display_name"]


@admin.register(Worker)
class WorkerAdmin(admin.ModelAdmin):
    list_display = [
        "name",
        "owner",
        "status",
        "in_flight",
        "slots",
        "engine",
        "version",
        "last_heartbeat",
        "jobs_completed",
        "jobs_failed",
        "jobs_aborted",
        "discrepancies",
        "ttft_ms_avg",
        "tokens_per_second",
        "paused_until",
        "flagged_reason",
    ]
    list_filter = ["status", "engine"]
    search_fields = ["name", "owner__email"]
    actions = ["ban", "unban", "unpause"]
    readonly_fields = [
        "owner",
        "name",
        "served_models",
        "slots",
        "in_flight",
        "status",
        "channel_name",
        "engine",
        "version",
        "hardware",
        "connected_at",
        "last_heartbeat",
        "last_assigned_at",
        "created_at",
        "jobs_completed",
        "jobs_failed",
        "jobs_aborted",
        "ttft_ms_total",
        "tokens_generated",
        "generation_ms_total",
        "faults_window_start",
        "faults_in_window",
        "paused_until",
    ]

    def has_add_permission(self, request):
        return False

    @admin.action(
        permissions=["change"],
        description="Ban the owner: close all its workers (4008); no worker name of it may connect",
    )
    def ban(self, request, queryset):
        for worker in queryset:
            worker_ban(worker=worker)
        self.message_user(request, f"Banned {queryset.count()} worker(s).", messages.SUCCESS)

    @admin.action(permissions=["change"], description="Lift the owner's ban: its workers may register again")
    def unban(self, request, queryset):
        for worker in queryset:
            worker_unban(worker=worker)
        self.message_user(request, f"Lifted the ban on {queryset.count()} worker(s).", messages.SUCCESS)

    @admin.action(
        permissions=["change"], description="Lift an automatic pause (the owner's too): the worker takes jobs again"
    )
    def unpause(self, request, queryset):
        for worker in queryset:
            worker_unpause(worker=worker)
        self.message_user(request, f"Lifted the pause on {queryset.count()} worker(s).", messages.SUCCESS)


@admin.register(Job)
class JobAdmin(ReadOnlyAdmin):
    list_display = ["public_id", "user", "model", "status", "worker", "completion_tokens", "created_at"]
    list_filter = ["status", "model", "claim_discrepancy"]
    search_fields = ["public_id", "id", "user__email"]
    date_hierarchy = "created_at"
    list_select_related = ["user", "worker"]
