"""sogni_platform.durability: only the transaction that asks commits without waiting for the disk."""

import pytest
from django.db import connection, transaction


def _synchronous_commit() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SHOW synchronous_commit")
        return cursor.fetchone()[0]


@pytest.mark.django_db(transaction=True)
def test_the_setting_lasts_for_its_transaction_only():
    from sogni_platform.durability import skip_commit_flush

    with transaction.atomic():
        skip_commit_flush()
        assert _synchronous_commit() == "off"
    assert _synchronous_commit() == "on"  # the next transaction on this connection flushes as usual
    skip_commit_flush()  # outside a transaction: nothing to change
    assert _synchronous_commit() == "on"
