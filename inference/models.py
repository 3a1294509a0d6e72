from decimal import Decimal

from django.db import models
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
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name = "model"
        ordering = ["id"]

    def __str__(self) -> str:
        return self.id
