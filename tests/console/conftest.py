import pytest

from tests.billing.invariants import ledger_invariants  # noqa: F401  (autouse: the ledger still sums after each test)
from tests.usage.conftest import _fast_password_hashing, catalog, make_user, sogni_rate  # noqa: F401 - fixtures


@pytest.fixture
def staff(make_user):  # noqa: F811 - the fixture imported above
    user = make_user("ops@example.com")
    user.is_staff = True
    user.is_superuser = True
    user.save(update_fields=["is_staff", "is_superuser"])
    return user


@pytest.fixture
def ops(client, staff):
    client.force_login(staff)
    return client
