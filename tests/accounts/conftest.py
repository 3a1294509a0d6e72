import pytest


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    """Signup hashes a password per test; the default hasher is deliberately slow."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
