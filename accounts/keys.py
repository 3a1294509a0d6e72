"""API key format and cryptography: `sk-sogni-<lookup>-<secret>`.

The lookup part finds the row; the secret is checked against an HMAC (server secret) in constant
time. An encrypted copy (Fernet, key from the environment) exists only so the owner can reveal it.
"""

import hashlib
import hmac
import secrets
import string
from dataclasses import dataclass

from cryptography.fernet import Fernet, MultiFernet
from django.conf import settings

PREFIX = "sk-sogni-"
LOOKUP_LENGTH = 12
SECRET_LENGTH = 40
_ALPHABET = string.ascii_letters + string.digits


@dataclass(frozen=True)
class ParsedKey:
    lookup_id: str
    secret: str


def generate_key() -> tuple[str, ParsedKey]:
    lookup_id = "".join(secrets.choice(_ALPHABET) for _ in range(LOOKUP_LENGTH))
    secret = "".join(secrets.choice(_ALPHABET) for _ in range(SECRET_LENGTH))
    return f"{PREFIX}{lookup_id}-{secret}", ParsedKey(lookup_id, secret)


def parse_key(raw: str) -> ParsedKey | None:
    if not raw.startswith(PREFIX):
        return None
    lookup_id, sep, secret = raw[len(PREFIX) :].partition("-")
    if not sep or len(lookup_id) != LOOKUP_LENGTH or len(secret) != SECRET_LENGTH:
        return None
    if not (lookup_id.isascii() and lookup_id.isalnum() and secret.isascii() and secret.isalnum()):
        return None
    return ParsedKey(lookup_id, secret)


def hash_secret(secret: str) -> str:
    return hmac.new(settings.API_KEY_HMAC_SECRET.encode(), secret.encode(), hashlib.sha256).hexdigest()


def secret_matches(secret: str, stored_hash: str) -> bool:
    return hmac.compare_digest(hash_secret(secret), stored_hash)


def _fernet() -> MultiFernet:
    return MultiFernet([Fernet(key.encode()) for key in settings.API_KEY_ENCRYPTION_KEYS])


def encrypt_key(raw: str) -> str:
    return _fernet().encrypt(raw.encode()).decode()


def decrypt_key(token: str) -> str:
    return _fernet().decrypt(token.encode()).decode()


def mask_key(lookup_id: str) -> str:
    return f"{PREFIX}{lookup_id[:4]}{'•' * 8}"
