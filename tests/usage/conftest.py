from decimal import Decimal

import pytest

from tests.billing.invariants import ledger_invariants  # noqa: F401  (autouse: the ledger still sums after each test)

PASSWORD = "correct horse battery staple"


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def catalog(db):
    from inference.catalog import catalog_seed

    catalog_seed()


@pytest.fixture
def sogni_rate(db):
    """One SOGNI = $0.01, set once for the whole test (transactional tests flush the seeded one)."""
    import datetime

    from billing.models import SogniRate

    SogniRate.objects.all().delete()
    return SogniRate.objects.create(
        usd_per_sogni=Decimal("0.01"), effective_from=datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC)
    )


@pytest.fixture
def make_user(db):
    from tests.accounts.factories import verified_signup

    def make(email: str):
        return verified_signup(email=email, password=PASSWORD)

    return make
