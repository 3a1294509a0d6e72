from django.conf import settings
from django.db import models

LIMIT_HELP = "Empty: the platform default. 0: no limit for this account."


class AccountLimits(models.Model):
    """An operator's per-account override of the platform's rate limits (one API key per account)."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="rate_limits")
    requests_per_minute = models.PositiveIntegerField(null=True, blank=True, help_text=LIMIT_HELP)
    tokens_per_minute = models.PositiveIntegerField(null=True, blank=True, help_text=LIMIT_HELP)
    note = models.CharField(max_length=200, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "account rate limits"
        verbose_name_plural = "account rate limits"

    def __str__(self) -> str:
        return f"limits for {self.user}"
