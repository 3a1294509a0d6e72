import pytest

from tests.billing.invariants import ledger_invariants  # noqa: F401  (autouse: the ledger still sums after each test)


@pytest.fixture
def catalog(db):
    from inference.catalog import catalog_seed

    catalog_seed()
