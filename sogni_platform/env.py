"""The one place settings read the environment."""

import json
import logging
import os
import secrets
from pathlib import Path
from typing import overload

from django.core.exceptions import ImproperlyConfigured

logger = logging.getLogger("sogni_platform.env")


@overload
def env_str(name: str, default: str) -> str: ...
@overload
def env_str(name: str, default: None = None) -> str | None: ...
def env_str(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(name, "").strip()
    return value or default


def env_int(name: str, default: int) -> int:
    value = env_str(name)
    return int(value) if value is not None else default


def env_bool(name: str, default: bool) -> bool:
    value = env_str(name)
    if value is None:
        return default
    return value.lower() in {"1", "true", "yes", "on"}


def env_list(name: str, default: list[str]) -> list[str]:
    value = env_str(name)
    if value is None:
        return default
    return [item.strip() for item in value.split(",") if item.strip()]


def env_secret(name: str, *, dev_secrets_file: Path | None, generate) -> str:
    """A secret from the environment.

    Production (``dev_secrets_file`` is None) has no default: a missing secret is an error.
    The embedded mode derives a development secret once and keeps it in the ignored data folder.
    """
    value = env_str(name)
    if value:
        return value
    if dev_secrets_file is None:
        raise ImproperlyConfigured(f"{name} must be set in the environment (no production default).")
    stored = json.loads(dev_secrets_file.read_text()) if dev_secrets_file.exists() else {}
    if name not in stored:
        stored[name] = generate()
        dev_secrets_file.parent.mkdir(parents=True, exist_ok=True)
        dev_secrets_file.write_text(json.dumps(stored, indent=2))
        dev_secrets_file.chmod(0o600)
    logger.warning("%s not set: using a development secret from %s (embedded mode only).", name, dev_secrets_file)
    return stored[name]


def random_secret() -> str:
    return secrets.token_urlsafe(48)
