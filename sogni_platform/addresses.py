"""The client's network address as the platform sees it."""

import ipaddress

from django.conf import settings

# No usable address (a unix socket without a proxy): such requests share one address.
UNKNOWN_ADDRESS = "::"


def _address(value: str) -> str | None:
    try:
        return str(ipaddress.ip_address(value.strip()))
    except ValueError:
        return None


def request_client_address(request) -> str:
    """REMOTE_ADDR, or with BEHIND_TLS_PROXY the last X-Forwarded-For entry: the one the platform's own
    proxy appended. Entries before it are whatever the client sent and are never trusted."""
    if settings.BEHIND_TLS_PROXY:
        forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")[-1]
        if address := _address(forwarded):
            return address
    return _address(request.META.get("REMOTE_ADDR", "")) or UNKNOWN_ADDRESS
