import pytest
from django.test import Client
from django.urls import reverse

from accounts.models import ApiKeyAuditEvent
from accounts.selectors import api_key_authenticate
from accounts.services import api_key_disable
from tests.support.factories import account_create

pytestmark = pytest.mark.django_db

ACTIONS = ["reveal", "regenerate", "disable", "enable"]


def _url(action: str) -> str:
    return reverse(f"accounts:api_key_{action}")


def _logged_in(user, **kwargs) -> Client:
    client = Client(**kwargs)
    client.force_login(user)
    return client


def test_owner_reveals_regenerates_disables_and_enables_their_key():
    user, raw = account_create(email="ada@example.com")
    client = _logged_in(user)

    revealed = client.post(_url("reveal")).json()
    assert revealed["key"] == raw
    assert revealed["masked"] == user.api_key.masked and revealed["enabled"] is True

    regenerated = client.post(_url("regenerate")).json()
    new = regenerated["key"]
    assert new != raw
    assert api_key_authenticate(raw) is None
    assert api_key_authenticate(new).user == user
    assert regenerated["masked"] != revealed["masked"]

    disabled = client.post(_url("disable")).json()
    assert disabled["enabled"] is False and "key" not in disabled
    assert api_key_authenticate(new) is None

    enabled = client.post(_url("enable")).json()
    assert enabled["enabled"] is True
    assert api_key_authenticate(new).user == user

    actions = list(user.api_key.audit_events.order_by("created_at", "id").values_list("action", "actor"))
    assert actions == [
        ("created", user.pk),
        ("revealed", user.pk),  # account_create() reveals once
        ("revealed", user.pk),
        ("regenerated", user.pk),
        ("disabled", user.pk),
        ("enabled", user.pk),
    ]


@pytest.mark.parametrize("action", ACTIONS)
def test_one_user_cannot_act_on_another_users_key(action):
    alice, alice_raw = account_create(email="alice@example.com")
    bob, bob_raw = account_create(email="bob@example.com")
    alice_events = alice.api_key.audit_events.count()
    client = _logged_in(bob)

    # Naming Alice's key in every way a request could changes nothing: the endpoints act on the session's user.
    response = client.post(
        _url(action) + f"?user={alice.pk}&lookup_id={alice.api_key.lookup_id}",
        {"user": alice.pk, "api_key": alice.api_key.pk, "lookup_id": alice.api_key.lookup_id},
    )
    assert response.status_code == 200
    assert alice_raw not in response.content.decode()
    assert api_key_authenticate(alice_raw).user == alice
    assert alice.api_key.audit_events.count() == alice_events
    if action == "reveal":
        assert response.json()["key"] == bob_raw


@pytest.mark.parametrize("action", ACTIONS)
def test_csrf_is_enforced(action):
    user, raw = account_create(email="ada@example.com")
    api_key_disable(api_key=user.api_key, actor=user, reason="disabled by owner") if action == "enable" else None
    events = ApiKeyAuditEvent.objects.count()
    client = _logged_in(user, enforce_csrf_checks=True)

    refused = client.post(_url(action))
    assert refused.status_code == 403
    assert raw not in refused.content.decode()
    assert ApiKeyAuditEvent.objects.count() == events

    client.get(reverse("dashboard:index"))  # sets the CSRF cookie, as the browser's page load does
    token = client.cookies["csrftoken"].value
    accepted = client.post(_url(action), HTTP_X_CSRFTOKEN=token)
    assert accepted.status_code == 200
    assert ApiKeyAuditEvent.objects.count() == events + 1


@pytest.mark.parametrize("action", ACTIONS)
def test_endpoints_require_login_and_post(client, action):
    user, raw = account_create(email="ada@example.com")
    anonymous = client.post(_url(action))
    assert anonymous.status_code == 401
    assert anonymous.json()["error"]["code"] == "not_authenticated"
    client.force_login(user)
    assert client.get(_url(action)).status_code == 405
    assert api_key_authenticate(raw).user == user


def test_owner_cannot_re_enable_a_key_an_operator_disabled():
    user, raw = account_create(email="ada@example.com")
    operator, _ = account_create(email="ops@example.com")
    api_key_disable(api_key=user.api_key, actor=operator, reason="disabled by operator")
    client = _logged_in(user)

    # Disabling again from the dashboard must not turn the operator's lock into the owner's own.
    assert client.post(_url("disable")).status_code == 200
    refused = client.post(_url("enable"))
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "api_key_locked"
    assert "disabled by operator" in refused.json()["error"]["message"]
    assert api_key_authenticate(raw) is None


def test_account_without_a_key_can_create_one_from_the_dialog(django_user_model):
    user = django_user_model.objects.create_user("admin@example.com", "correct horse battery staple")
    client = _logged_in(user)
    assert client.get(reverse("dashboard:index")).status_code == 200
    assert client.post(_url("reveal")).status_code == 404
    created = client.post(_url("regenerate")).json()
    assert api_key_authenticate(created["key"]).user == user
