from decimal import Decimal

import pytest

from tests.billing.invariants import ledger_invariants  # noqa: F401  (autouse: checked after every billing test)


@pytest.fixture
def catalog():
    from inference.catalog import catalog_seed

    catalog_seed()


@pytest.fixture
def sogni_rate():
    """One SOGNI = $0.01 (transactional tests flush the migration's seeded rate)."""
    from billing.models import SogniRate

    SogniRate.objects.all().delete()
    return SogniRate.objects.create(usd_per_sogni=Decimal("0.01"))


@pytest.fixture
def make_user(db):
    from tests.accounts.factories import verified_signup

    counter = iter(range(10_000))

    def make(email: str | None = None, password: str = "correct horse battery"):
        return verified_signup(email=email or f"user{next(counter)}@example.com", password=password)

    return make
