from django.contrib.auth.models import AbstractBaseUser, BaseUserManager, PermissionsMixin
from django.db import models
from django.db.models.functions import Lower
from django.utils import timezone


class TokenType(models.TextChoices):
    SPARK = "spark", "Spark"
    SOGNI = "sogni", "SOGNI"


class TokenTypePreference(models.TextChoices):
    AUTO = "auto", "Auto (Spark, then SOGNI)"
    SPARK = "spark", "Spark"
    SOGNI = "sogni", "SOGNI"


class UserManager(BaseUserManager["User"]):
    use_in_migrations = True

    def get_by_natural_key(self, username):
        return self.get(email__iexact=username)

    def create_user(self, email, password=None, **extra_fields):
        user = self.model(email=self.normalize_email(email).lower(), **extra_fields)
        user.set_password(password)
        user.save(using=self._db)
        return user

    def create_superuser(self, email, password=None, **extra_fields):
        return self.create_user(email, password, is_staff=True, is_superuser=True, **extra_fields)


class User(AbstractBaseUser, PermissionsMixin):
    email = models.EmailField(unique=True)
    is_active = models.BooleanField(default=True)
    is_staff = models.BooleanField(default=False)
    date_joined = models.DateTimeField(default=timezone.now)
    default_token_type = models.CharField(
        max_length=8, choices=TokenTypePreference.choices, default=TokenTypePreference.AUTO
    )
    # The starter grant is credited when the address is verified (accounts/verification.py).
    email_verified_at = models.DateTimeField(null=True, blank=True)
    verification_sent_at = models.DateTimeField(null=True, blank=True)
    # Where the signup came from (None: made by an operator); signups per address are limited.
    signup_address = models.GenericIPAddressField(null=True, blank=True)

    objects = UserManager()

    USERNAME_FIELD = "email"
    EMAIL_FIELD = "email"

    class Meta:
        constraints = [models.UniqueConstraint(Lower("email"), name="accounts_user_email_ci_unique")]
        indexes = [models.Index(fields=["signup_address", "date_joined"], name="accounts_user_signup_addr")]

    def __str__(self) -> str:
        return self.email


class ApiKey(models.Model):
    """One key per account. The secret is never stored: only an HMAC of it and an encrypted copy."""

    user = models.OneToOneField(User, on_delete=models.CASCADE, related_name="api_key")
    lookup_id = models.CharField(max_length=16, unique=True)
    secret_hash = models.CharField(max_length=64)
    encrypted_key = models.TextField()
    is_enabled = models.BooleanField(default=True)
    disabled_reason = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    rotated_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "API key"

    def __str__(self) -> str:
        return f"{self.masked} ({self.user})"

    @property
    def masked(self) -> str:
        from accounts.keys import mask_key

        return mask_key(self.lookup_id)


class ApiKeyAuditEvent(models.Model):
    class Action(models.TextChoices):
        CREATED = "created"
        REVEALED = "revealed"
        REGENERATED = "regenerated"
        DISABLED = "disabled"
        ENABLED = "enabled"

    api_key = models.ForeignKey(ApiKey, on_delete=models.CASCADE, related_name="audit_events")
    action = models.CharField(max_length=16, choices=Action.choices)
    actor = models.ForeignKey(User, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    reason = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "API key audit event"

    def __str__(self) -> str:
        return f"{self.action} {self.api_key_id} by {self.actor_id}"
