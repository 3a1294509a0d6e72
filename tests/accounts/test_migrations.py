"""accounts' data migration: accounts made before email verification existed count as verified."""

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

BEFORE = [("accounts", "0001_initial")]


@pytest.mark.django_db(transaction=True)
def test_accounts_from_before_verification_are_verified_as_of_their_signup():
    executor = MigrationExecutor(connection)
    latest = executor.loader.graph.leaf_nodes()
    executor.migrate(BEFORE)
    try:
        old_user = executor.loader.project_state(BEFORE).apps.get_model("accounts", "User")
        existing = old_user.objects.create(email="early@example.com", password="!")
    finally:
        executor = MigrationExecutor(connection)
        executor.migrate(latest)

    from accounts.models import User

    user = User.objects.get(pk=existing.pk)
    assert user.email_verified_at == user.date_joined
