from functools import wraps

from django.contrib.auth import login
from django.contrib.auth import views as auth_views
from django.db import IntegrityError
from django.http import JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST

from accounts.forms import EMAIL_TAKEN, SignupForm
from accounts.models import ApiKey
from accounts.selectors import api_key_for_user
from accounts.services import (
    OWNER_DISABLED,
    ApiKeyLocked,
    SignupThrottled,
    api_key_create,
    api_key_disable,
    api_key_enable,
    api_key_regenerate,
    api_key_reveal,
    user_signup,
)
from accounts.verification import (
    email_verification_send,
)
from sogni_platform.addresses import request_client_address
from sogni_platform.exceptions import error_body


def home(request):
    return redirect("dashboard:index" if request.user.is_authenticated else "accounts:login")


def signup(request):
    if request.user.is_authenticated:
        return redirect("dashboard:index")
    form = SignupForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            user = user_signup(
                email=form.cleaned_data["email"],
                password=form.cleaned_data["password1"],
                address=request_client_address(request),
            )
        except IntegrityError:  # the same email signed up concurrently
            form.add_error("email", EMAIL_TAKEN)
        except SignupThrottled as throttled:
            form.add_error(None, str(throttled))
            page = render(request, "accounts/signup.html", {"form": form}, status=429)
            return _retry_after(page, throttled.retry_after)
        else:
            email_verification_send(user=user, site_url=request.build_absolute_uri("/"))
            login(request, user, backend="django.contrib.auth.backends.ModelBackend")
            return redirect("dashboard:index")
    return render(request, "accounts/signup.html", {"form": form})


def _retry_after(response, seconds: int):
    response["Retry-After"] = str(seconds)
    return response


class LoginView(auth_views.LoginView):
    template_name = "accounts/login.html"
    redirect_authenticated_user = True


class LogoutView(auth_views.LogoutView):
    pass


# The dialog's endpoints: POST only, CSRF-checked by the middleware, session login required, and they
# act on request.user's own key only (they take no key id, so there is no other key to name).


def _error(message: str, status: int, code: str) -> JsonResponse:
    return JsonResponse(error_body(message, type="invalid_request_error", code=code), status=status)


def _key_state(api_key: ApiKey, message: str, raw: str | None = None) -> JsonResponse:
    body = {"masked": api_key.masked, "enabled": api_key.is_enabled, "message": message}
    if raw is not None:
        body["key"] = raw
    return JsonResponse(body)


def _owner_key_action(action):
    @wraps(action)
    @never_cache
    @require_POST
    def view(request):
        if not request.user.is_authenticated:
            return _error("Log in to manage your API key.", 401, "not_authenticated")
        return action(request, api_key_for_user(user=request.user))

    return view


def _no_key() -> JsonResponse:
    return _error("You have no API key yet. Use Regenerate to create one.", 404, "no_api_key")


@_owner_key_action
def api_key_reveal_view(request, api_key: ApiKey | None):
    if api_key is None:
        return _no_key()
    raw = api_key_reveal(api_key=api_key, actor=request.user)
    return _key_state(api_key, "Key revealed. Keep it secret.", raw)


@_owner_key_action
def api_key_regenerate_view(request, api_key: ApiKey | None):
    if api_key is None:
        api_key, raw = api_key_create(user=request.user)
        return _key_state(api_key, "API key created. Copy it now.", raw)
    raw = api_key_regenerate(api_key=api_key, actor=request.user)
    api_key.refresh_from_db()
    return _key_state(api_key, "New key generated. The old key no longer works.", raw)


@_owner_key_action
def api_key_disable_view(request, api_key: ApiKey | None):
    if api_key is None:
        return _no_key()
    api_key = api_key_disable(api_key=api_key, actor=request.user, reason=OWNER_DISABLED)
    return _key_state(api_key, "Key disabled. API calls with it are refused until you enable it.")


@_owner_key_action
def api_key_enable_view(request, api_key: ApiKey | None):
    if api_key is None:
        return _no_key()
    try:
        api_key = api_key_enable(api_key=api_key, actor=request.user)
    except ApiKeyLocked as locked:
        message = f"This key was disabled by the platform ({locked}); only support can enable it."
        return _error(message, 403, "api_key_locked")
    return _key_state(api_key, "Key enabled. API calls with it are accepted again.")
