"""Run as `python -m bench.setup_db` with the bench environment: the bench's client account (no rate
limit, plenty of Spark) and its worker operator, printed as JSON {"client_key", "operator_key"}."""

import json
import os
import uuid
from decimal import Decimal

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "sogni_platform.settings")
django.setup()

from accounts.models import User  # noqa: E402
from accounts.services import api_key_reveal, user_signup  # noqa: E402
from billing.services.adjustments import wallet_adjust  # noqa: E402
from billing.services.ledger import wallets_ensure  # noqa: E402
from inference.catalog import catalog_seed  # noqa: E402
from ratelimits.services import account_limits_set  # noqa: E402

PASSWORD = "bench-password-not-secret-4711"  # noqa: S105 - a local throwaway account
SPARK_FLOOR = Decimal("1000000")


def _account(email: str) -> tuple[User, str]:
    user = User.objects.filter(email=email).first() or user_signup(email=email, password=PASSWORD)
    return user, api_key_reveal(api_key=user.api_key, actor=None, reason="bench/setup_db")


def main() -> None:
    catalog_seed()
    client, client_key = _account("bench-client@bench.invalid")
    operator, operator_key = _account("bench-operator@bench.invalid")
    account_limits_set(user=client, requests_per_minute=0, tokens_per_minute=0, note="benchmarks: unlimited")
    spark = wallets_ensure(user=client)["spark"]
    if spark.available < SPARK_FLOOR:
        wallet_adjust(
            wallet=spark, amount=SPARK_FLOOR, reason="benchmark budget", operator=operator, key=uuid.uuid4().hex
        )
    print(json.dumps({"client_key": client_key, "operator_key": operator_key}))


if __name__ == "__main__":
    main()
