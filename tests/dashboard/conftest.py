from tests.usage.conftest import catalog, ledger_invariants  # noqa: F401 - fixtures
