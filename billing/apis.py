from decimal import Decimal

from rest_framework.response import Response
from rest_framework.views import APIView

from billing.selectors import wallet_views


def decimal_str(value: Decimal | None) -> str | None:
    """Exact, plain notation: Decimal("100.000000000000") -> "100"."""
    return None if value is None else f"{value.normalize():f}"


class AccountBalanceApi(APIView):
    """GET /v1/account/balance: both wallets, in token units and USD, as exact decimal strings."""

    def get(self, request):
        data = []
        for wallet in wallet_views(user=request.user):
            data.append(
                {
                    "object": "wallet",
                    "token_type": wallet.token_type,
                    "balance": decimal_str(wallet.balance),
                    "held": decimal_str(wallet.held),
                    "available": decimal_str(wallet.available),
                    "usd_per_token": decimal_str(wallet.usd_per_token),
                    "usd": {
                        "balance": decimal_str(wallet.usd(wallet.balance)),
                        "held": decimal_str(wallet.usd(wallet.held)),
                        "available": decimal_str(wallet.usd(wallet.available)),
                    },
                }
            )
        return Response(
            {"object": "account.balance", "default_token_type": request.user.default_token_type, "data": data}
        )
