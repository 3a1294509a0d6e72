"""Settings, all read from the environment (README "Settings" lists them all).

Two modes, one code path: with no DATABASE_URL / REDIS_URL the platform runs embedded
(SQLite in data/, in-memory channel layer, eager Celery); with them, PostgreSQL and Redis.
"""

from decimal import Decimal
from pathlib import Path
from typing import Any

import dj_database_url
from cryptography.fernet import Fernet

from sogni_platform.env import env_bool, env_int, env_list, env_secret, env_str, random_secret
from sogni_platform.logging import logging_config

BASE_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = Path(env_str("SOGNI_DATA_DIR", str(BASE_DIR / "data")))

DATABASE_URL = env_str("DATABASE_URL")
REDIS_URL = env_str("REDIS_URL")
EMBEDDED = DATABASE_URL is None
_dev_secrets = DATA_DIR / "dev-secrets.json" if EMBEDDED else None

SECRET_KEY = env_secret("DJANGO_SECRET_KEY", dev_secrets_file=_dev_secrets, generate=random_secret)
API_KEY_HMAC_SECRET = env_secret("API_KEY_HMAC_SECRET", dev_secrets_file=_dev_secrets, generate=random_secret)
# Comma-separated Fernet keys; the first encrypts, all decrypt (rotation).
API_KEY_ENCRYPTION_KEYS = env_secret(
    "API_KEY_ENCRYPTION_KEY",
    dev_secrets_file=_dev_secrets,
    generate=lambda: Fernet.generate_key().decode(),
).split(",")

DEBUG = env_bool("DJANGO_DEBUG", False)
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])
SESSION_COOKIE_SECURE = env_bool("SECURE_COOKIES", False)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
# Behind the platform's own reverse proxy: trust its X-Forwarded-Proto and the X-Forwarded-For entry it appends
# (sogni_platform.addresses). Off, both headers are the client's word and are ignored.
BEHIND_TLS_PROXY = env_bool("BEHIND_TLS_PROXY", False)
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if BEHIND_TLS_PROXY else None

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "channels",
    "accounts",
    "billing",
    "inference",
    "ratelimits",
    "console",
    "dashboard",
]

MIDDLEWARE = [
    "sogni_platform.middleware.RequestIdMiddleware",
    "sogni_platform.cors.CorsMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "sogni_platform.urls"
ASGI_APPLICATION = "sogni_platform.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES: dict[str, dict[str, Any]]
if EMBEDDED:
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": DATA_DIR / "db.sqlite3",
            "OPTIONS": {"timeout": 20, "transaction_mode": "IMMEDIATE"},
        }
    }
else:
    assert DATABASE_URL is not None  # the embedded mode is its absence
    DATABASES = {"default": dict(dj_database_url.parse(DATABASE_URL, conn_max_age=env_int("DB_CONN_MAX_AGE", 0)))}
    DATABASES["default"].setdefault("OPTIONS", {})
    # A psycopg pool per process: a request's or task's thread borrows a connection instead of opening one
    # (docs/operations.md). Off by default; incompatible with DB_CONN_MAX_AGE > 0.
    if env_int("DB_POOL_MAX_SIZE", 0):
        DATABASES["default"]["OPTIONS"]["pool"] = {
            "min_size": env_int("DB_POOL_MIN_SIZE", 2),
            "max_size": env_int("DB_POOL_MAX_SIZE", 0),
            "timeout": float(env_str("DB_POOL_TIMEOUT", "30")),
        }

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
AUTH_USER_MODEL = "accounts.User"
LOGIN_URL = "accounts:login"
LOGIN_REDIRECT_URL = "dashboard:index"
LOGOUT_REDIRECT_URL = "accounts:login"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
# Static files are served from the apps by Django's ASGIStaticFilesHandler (sogni_platform/asgi.py), which keeps
# the middleware chain async; STATIC_ROOT only for `collectstatic` in production.
STATIC_ROOT = env_str("STATIC_ROOT")

# Channel layer: Redis pub/sub between processes when REDIS_URL is set (in-process sends skip Redis), else
# in-memory (one process only).
CHANNEL_LAYER_PREFIX = env_str("CHANNEL_LAYER_PREFIX", "sogni")
# Messages one channel of a server process holds unread (a reply channel whose client reads slowly): past
# it the request ends with an error, so a worker cannot grow a process's memory without bound.
CHANNEL_CAPACITY = env_int("CHANNEL_CAPACITY", 100_000)
if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "sogni_platform.channel_layers.LocalFirstChannelLayer",
            "CONFIG": {"hosts": [REDIS_URL], "prefix": CHANNEL_LAYER_PREFIX, "capacity": CHANNEL_CAPACITY},
        }
    }
else:
    CHANNEL_LAYERS = {
        "default": {"BACKEND": "channels.layers.InMemoryChannelLayer", "CONFIG": {"capacity": CHANNEL_CAPACITY}}
    }

# Celery: over Redis when REDIS_URL is set, else eager in the web process.
CELERY_BROKER_URL = REDIS_URL or "memory://"
CELERY_TASK_ALWAYS_EAGER = REDIS_URL is None
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TASK_IGNORE_RESULT = True
CELERY_RESULT_BACKEND = None
CELERY_TASK_ACKS_LATE = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_WORKER_CONSUMER = "sogni_platform.celery_consumer:FastReconnectConsumer"
# A publish (a queued job's dispatch, from a server's pool thread) must not wait long on an unreachable broker.
CELERY_BROKER_TRANSPORT_OPTIONS = {"socket_connect_timeout": 2}
CELERY_TASK_DEFAULT_QUEUE = env_str("CELERY_QUEUE", "sogni")
CELERY_BEAT_SCHEDULE: dict = {}

# API
# Origins a browser app may call /v1/ from (CORS); "*" any: the API takes bearer keys, never cookies.
CORS_ALLOWED_ORIGINS = env_list("CORS_ALLOWED_ORIGINS", ["*"])
# Largest request body /v1/chat/completions accepts (413 above it).
MAX_REQUEST_BYTES = env_int("MAX_REQUEST_BYTES", 4 * 1024 * 1024)
# Django refuses to read larger bodies; the API answers 413 before that (inference/openai/requests.py).
DATA_UPLOAD_MAX_MEMORY_SIZE = MAX_REQUEST_BYTES

# Inference: dispatch, worker sockets, relay (docs/architecture.md, docs/operations.md).
JOB_QUEUE_TIMEOUT = float(env_str("JOB_QUEUE_TIMEOUT", "30"))
# How long a server process reuses a model's row for chat requests; a change saved in that process
# applies at once, in others within this many seconds. 0: read it for every request.
MODEL_CACHE_SECONDS = float(env_str("MODEL_CACHE_SECONDS", "2"))
# The same for an API key's row (with its user and limits) on chat requests: a key disabled or
# regenerated through another process is refused within this many seconds. Elsewhere it is read anew.
API_KEY_CACHE_SECONDS = float(env_str("API_KEY_CACHE_SECONDS", "2"))
JOB_MAX_ATTEMPTS = env_int("JOB_MAX_ATTEMPTS", 3)
SSE_KEEPALIVE_SECONDS = float(env_str("SSE_KEEPALIVE_SECONDS", "10"))
# A stream's headers wait this long for its job's first delta, so a failure known by then (the worker
# refused the job, no worker became available) is answered with its own HTTP status.
STREAM_HEADERS_WAIT_SECONDS = float(env_str("STREAM_HEADERS_WAIT_SECONDS", "2"))
# A request whose assigned job sent nothing for this long reads the job's row: an end whose message was
# lost, or a lapsed lease nobody reaped, ends the request with the job's real outcome.
JOB_QUIET_CHECK_SECONDS = float(env_str("JOB_QUIET_CHECK_SECONDS", "5"))
WORKER_HEARTBEAT_SECONDS = float(env_str("WORKER_HEARTBEAT_SECONDS", "5"))
WORKER_HELLO_TIMEOUT = float(env_str("WORKER_HELLO_TIMEOUT", "10"))
WORKER_MAX_MESSAGE_BYTES = env_int("WORKER_MAX_MESSAGE_BYTES", 64 * 1024)
# Frames per second per worker connection; each delta of a `deltas` frame counts as one.
WORKER_MAX_MESSAGES_PER_SECOND = env_int("WORKER_MAX_MESSAGES_PER_SECOND", 2000)
# Token accounting (docs "Token counting"). Uploaded tokenizers (LlmModel.tokenizer) live under MEDIA_ROOT,
# which every server and Celery process must see.
MEDIA_ROOT = Path(env_str("MEDIA_ROOT", str(DATA_DIR / "media")))
# A worker's usage claim that differs from the platform's count by more than this is a discrepancy.
CLAIM_TOLERANCE_PERCENT = Decimal(env_str("CLAIM_TOLERANCE_PERCENT", "5"))
CLAIM_TOLERANCE_TOKENS = env_int("CLAIM_TOLERANCE_TOKENS", 2)
# Output a job may relay: max_tokens times this many UTF-8 bytes, plus the slack; past it the job fails.
JOB_OUTPUT_BYTES_PER_TOKEN = env_int("JOB_OUTPUT_BYTES_PER_TOKEN", 32)
JOB_OUTPUT_BYTES_SLACK = env_int("JOB_OUTPUT_BYTES_SLACK", 4096)
# Live worker connections one account may hold (across server processes); more are closed with 4005.
WORKER_MAX_CONNECTIONS_PER_OWNER = env_int("WORKER_MAX_CONNECTIONS_PER_OWNER", 16)
CELERY_BEAT_SCHEDULE["inference-reap-stale"] = {"task": "inference.tasks.reap_stale_task", "schedule": 30.0}

# Reliability: leases, earnings escrow, worker trust (docs/operations.md "Reliability").
JOB_LEASE_SECONDS = float(env_str("JOB_LEASE_SECONDS", "15"))
# How often a server process saves the tokens relayed of its running jobs (what a crash may lose).
JOB_PROGRESS_SECONDS = float(env_str("JOB_PROGRESS_SECONDS", "0.5"))
JOB_MAX_DURATION_SECONDS = float(env_str("JOB_MAX_DURATION_SECONDS", "600"))
JOB_REAPER_SECONDS = float(env_str("JOB_REAPER_SECONDS", "5"))
HOLD_ORPHAN_GRACE_SECONDS = float(env_str("HOLD_ORPHAN_GRACE_SECONDS", "120"))
WORKER_PROBATION_DAYS = float(env_str("WORKER_PROBATION_DAYS", "7"))
WORKER_MAX_FAILURES_PER_HOUR = env_int("WORKER_MAX_FAILURES_PER_HOUR", 5)
WORKER_PAUSE_SECONDS = float(env_str("WORKER_PAUSE_SECONDS", "3600"))
WORKER_MAX_PLAUSIBLE_TPS = float(env_str("WORKER_MAX_PLAUSIBLE_TPS", "2000"))
# An owner whose workers were paused more than this many times within a day is paused as a whole.
OWNER_MAX_PAUSES_PER_DAY = env_int("OWNER_MAX_PAUSES_PER_DAY", 3)
OWNER_PAUSE_SECONDS = float(env_str("OWNER_PAUSE_SECONDS", "86400"))
CELERY_BEAT_SCHEDULE["inference-reap-leases"] = {
    "task": "inference.tasks.reap_leases_task",
    "schedule": JOB_REAPER_SECONDS,
}
CELERY_BEAT_SCHEDULE["billing-release-escrow"] = {"task": "inference.tasks.release_escrow_task", "schedule": 300.0}
# Responses API (docs/api.md "Responses API"): stored responses are kept this many days (0: until deleted).
RESPONSES_RETENTION_DAYS = float(env_str("RESPONSES_RETENTION_DAYS", "30"))
CELERY_BEAT_SCHEDULE["inference-purge-stored-responses"] = {
    "task": "inference.tasks.purge_stored_responses_task",
    "schedule": 3600.0,
}

# Billing (docs/billing.md). Stripe is optional: without keys top-ups are off.
STARTER_GRANT_SPARK = Decimal(env_str("STARTER_GRANT_SPARK", "100"))
DAILY_BONUS_SPARK = Decimal(env_str("DAILY_BONUS_SPARK", "50"))
WORKER_REWARD_SHARE = Decimal(env_str("WORKER_REWARD_SHARE", "0.70"))
STRIPE_SECRET_KEY = env_str("STRIPE_SECRET_KEY")
STRIPE_WEBHOOK_SECRET = env_str("STRIPE_WEBHOOK_SECRET")
STRIPE_API_BASE = env_str("STRIPE_API_BASE")

# Signup and email verification (docs: "Signup and email verification"). Accounts per client address
# per hour (0: unlimited); the starter grant is credited when the emailed link is opened.
SIGNUP_LIMIT_PER_HOUR = env_int("SIGNUP_LIMIT_PER_HOUR", 5)
EMAIL_VERIFICATION_MAX_AGE = env_int("EMAIL_VERIFICATION_MAX_AGE", 3 * 24 * 3600)
EMAIL_VERIFICATION_RESEND_SECONDS = env_int("EMAIL_VERIFICATION_RESEND_SECONDS", 60)
# The embedded mode prints emails on the console (`make run`'s terminal); otherwise SMTP.
EMAIL_BACKEND = env_str(
    "EMAIL_BACKEND",
    "django.core.mail.backends.console.EmailBackend" if EMBEDDED else "django.core.mail.backends.smtp.EmailBackend",
)
EMAIL_HOST = env_str("EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("EMAIL_PORT", 25)
# Unset user or password: no SMTP login (a local relay). The password is a secret: no default.
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER")
EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
EMAIL_TIMEOUT = env_int("EMAIL_TIMEOUT", 10)
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "Sogni Intelligence <noreply@localhost>")

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["accounts.authentication.ApiKeyAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "EXCEPTION_HANDLER": "sogni_platform.exceptions.api_exception_handler",
    "UNAUTHENTICATED_USER": None,
    "DEFAULT_THROTTLE_CLASSES": ["ratelimits.throttling.ApiKeyRateThrottle"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
}

# Limits and observability (docs/api.md, docs/operations.md).
# Per API key (one per account), per minute; 0 = unlimited; operators override per account.
RATE_LIMIT_RPM = env_int("RATE_LIMIT_RPM", 60)
RATE_LIMIT_TPM = env_int("RATE_LIMIT_TPM", 100_000)
METRICS_TOKEN = env_str("METRICS_TOKEN")
LOG_FORMAT = env_str("LOG_FORMAT", "plain")
LOGGING = logging_config(log_format=LOG_FORMAT, level=env_str("LOG_LEVEL", "INFO"))
SPECTACULAR_SETTINGS = {
    "TITLE": "Sogni Intelligence API",
    "DESCRIPTION": "OpenAI-compatible inference on a network of third-party GPU workers.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SCHEMA_PATH_PREFIX": "/v1",
    "DISABLE_ERRORS_AND_WARNINGS": True,  # views without serializers are completed by the hook
    "POSTPROCESSING_HOOKS": ["drf_spectacular.hooks.postprocess_schema_enums", "sogni_platform.openapi.postprocess"],
}
