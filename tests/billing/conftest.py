import pytest

from tests.billing.invariants import ledger_invariants  # noqa: F401  (autouse: checked after every billing test)


@pytest.fixture
def catalog():
    from inference.catalog import catalog_seed

    catalog_seed()
