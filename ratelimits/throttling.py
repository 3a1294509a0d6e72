from rest_framework.throttling import BaseThrottle

from ratelimits.services import ratelimit_check_request


class ApiKeyRateThrottle(BaseThrottle):
    """DRF's entry to the per-key limits: counts the request, or raises the 429 ApiError itself

    (so the response carries Retry-After and the x-ratelimit-* headers). Requests not authenticated
    by an API key (public views, sessions) are not limited here.
    """

    def allow_request(self, request, view) -> bool:
        api_key = request.auth
        if api_key is None or not hasattr(api_key, "user_id"):
            return True
        request._request.ratelimit_state = ratelimit_check_request(api_key=api_key)
        return True
