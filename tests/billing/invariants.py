"""The shared money check: after a test, every wallet's ledger sums to its balance and held amount.

Use it from any test directory's conftest.py: `from tests.billing.invariants import ledger_invariants  # noqa: F401`.
"""

import pytest

DB_FIXTURES = {"db", "transactional_db", "django_db_reset_sequences", "django_db_serialized_rollback", "live_server"}


def _uses_db(request) -> bool:
    return request.node.get_closest_marker("django_db") is not None or bool(DB_FIXTURES & set(request.fixturenames))


@pytest.fixture(autouse=True)
def ledger_invariants(request):
    """Autouse: runs billing.selectors.ledger_invariant_violations() after every test that touches the database."""
    if not _uses_db(request):
        yield
        return
    # Set the database up before this fixture, so this check runs before a transactional test's flush.
    request.getfixturevalue("db")
    yield
    from billing.selectors import ledger_invariant_violations

    violations = ledger_invariant_violations()
    assert violations == [], "ledger invariants broken:\n" + "\n".join(violations)
