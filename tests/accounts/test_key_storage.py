import hmac

import pytest
from django.db import connection

from accounts import keys
from accounts.keys import parse_key
from accounts.selectors import api_key_authenticate
from accounts.services import api_key_regenerate
from tests.support.factories import account_create

pytestmark = pytest.mark.django_db


def _tables_containing(needle: str) -> set[str]:
    """Every table with a row whose any column, read as text, contains `needle`."""
    found = set()
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names(cursor):
            for column in connection.introspection.get_table_description(cursor, table):
                quoted_table = connection.ops.quote_name(table)
                quoted_column = connection.ops.quote_name(column.name)
                cursor.execute(
                    f"SELECT 1 FROM {quoted_table} WHERE CAST({quoted_column} AS TEXT) LIKE %s LIMIT 1",
                    [f"%{needle}%"],
                )
                if cursor.fetchone():
                    found.add(table)
    return found


def test_no_table_holds_a_key_or_its_secret_in_plain_text():
    raws = []
    for email in ["ada@example.com", "bob@example.com"]:
        user, raw = account_create(email=email)
        raws += [raw, api_key_regenerate(api_key=user.api_key, actor=user)]

    for raw in raws:
        parsed = parse_key(raw)
        assert _tables_containing(raw) == set()
        assert _tables_containing(parsed.secret) == set()
    # The scan does see what is stored: the public lookup part of the current key is in accounts_apikey.
    assert _tables_containing(parse_key(raws[-1]).lookup_id) == {"accounts_apikey"}


def test_secrets_are_compared_in_constant_time_for_known_and_unknown_lookup_ids(monkeypatch):
    user, raw = account_create(email="ada@example.com")
    calls = []
    real = hmac.compare_digest

    def spy(a, b):
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(keys.hmac, "compare_digest", spy)
    parsed = parse_key(raw)
    wrong_secret = raw[:-1] + ("a" if raw[-1] != "a" else "b")
    unknown_lookup = f"{keys.PREFIX}{'Z' * keys.LOOKUP_LENGTH}-{parsed.secret}"

    assert api_key_authenticate(raw).user == user
    assert api_key_authenticate(wrong_secret) is None
    assert api_key_authenticate(unknown_lookup) is None
    assert len(calls) == 3
    # Each call compared an HMAC of the presented secret, never the raw strings.
    assert all(len(a) == len(b) == 64 and parsed.secret not in (a, b) for a, b in calls)
    assert calls[0][0] == calls[0][1] == user.api_key.secret_hash
    assert calls[2][0] == calls[0][0]  # unknown lookup id: the same secret is still hashed and compared
