import pytest

from tests.e2e.charging_checks import limits_lifted, sogni_rate_set
from tests.support.factories import account_create


@pytest.fixture
def user(transactional_db, catalog):
    """A paying customer: a SOGNI rate is set and the account's rate limits are lifted."""
    sogni_rate_set()
    account = account_create(email="user@example.com")
    limits_lifted(account.user)
    return account
