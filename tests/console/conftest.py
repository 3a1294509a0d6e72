import pytest

from tests.usage.conftest import catalog, ledger_invariants  # noqa: F401 - fixtures


@pytest.fixture
def staff(make_user):
    user = make_user("ops@example.com")
    user.is_staff = True
    user.is_superuser = True
    user.save(update_fields=["is_staff", "is_superuser"])
    return user


@pytest.fixture
def ops(client, staff):
    client.force_login(staff)
    return client
