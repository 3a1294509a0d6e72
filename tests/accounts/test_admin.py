import pytest
from django.test import Client
from django.urls import reverse

from accounts.admin import OPERATOR_DISABLED
from accounts.models import ApiKey, ApiKeyAuditEvent
from accounts.selectors import api_key_authenticate
from tests.support.factories import PASSWORD, account_create

pytestmark = pytest.mark.django_db


@pytest.fixture
def operator(client, django_user_model):
    user = django_user_model.objects.create_superuser("ops@example.com", "correct horse battery staple")
    client.force_login(user)
    return user


def _secret_parts(api_key: ApiKey, raw: str) -> list[str]:
    return [raw, raw.rsplit("-", 1)[1], api_key.secret_hash, api_key.encrypted_key, api_key.lookup_id]


def test_api_key_pages_show_the_masked_key_and_never_its_secret(client, operator):
    user, raw = account_create(email="ada@example.com")
    api_key = user.api_key
    pages = [
        client.get(reverse("admin:accounts_apikey_changelist")),
        client.get(reverse("admin:accounts_apikey_change", args=[api_key.pk])),
        client.get(reverse("admin:accounts_apikeyauditevent_changelist")),
        client.get(reverse("admin:accounts_user_change", args=[user.pk])),
    ]
    for page in pages:
        assert page.status_code == 200
        html = page.content.decode()
        for secret in _secret_parts(api_key, raw):
            assert secret not in html
    assert api_key.masked in pages[0].content.decode()
    assert user.password not in pages[3].content.decode()


def test_operator_disables_and_enables_keys_with_an_admin_action(client, operator):
    user, raw = account_create(email="ada@example.com")
    changelist = reverse("admin:accounts_apikey_changelist")

    response = client.post(changelist, {"action": "disable_keys", "_selected_action": [user.api_key.pk]})
    assert response.status_code == 302
    assert api_key_authenticate(raw) is None
    event = ApiKeyAuditEvent.objects.filter(api_key=user.api_key).first()
    assert (event.action, event.actor, event.reason) == ("disabled", operator, OPERATOR_DISABLED)
    assert OPERATOR_DISABLED in client.get(changelist).content.decode()

    client.post(changelist, {"action": "enable_keys", "_selected_action": [user.api_key.pk]})
    assert api_key_authenticate(raw).user == user
    assert ApiKeyAuditEvent.objects.filter(api_key=user.api_key).first().actor == operator


def test_audit_log_and_keys_cannot_be_edited_added_or_deleted(client, operator):
    user, _ = account_create(email="ada@example.com")
    event = ApiKeyAuditEvent.objects.filter(api_key=user.api_key).first()
    assert client.get(reverse("admin:accounts_apikeyauditevent_add")).status_code == 403
    assert client.get(reverse("admin:accounts_apikey_add")).status_code == 403
    assert (
        client.post(reverse("admin:accounts_apikeyauditevent_delete", args=[event.pk]), {"post": "yes"}).status_code
        == 403
    )
    before = ApiKey.objects.values().get(pk=user.api_key.pk)
    client.post(reverse("admin:accounts_apikey_change", args=[user.api_key.pk]), {"is_enabled": "", "lookup_id": "x"})
    assert ApiKey.objects.values().get(pk=user.api_key.pk) == before


def test_staff_without_change_permission_cannot_run_the_actions(client, django_user_model):
    user, raw = account_create(email="ada@example.com")
    viewer = django_user_model.objects.create_user("viewer@example.com", "correct horse battery staple", is_staff=True)
    from django.contrib.auth.models import Permission

    viewer.user_permissions.add(Permission.objects.get(codename="view_apikey"))
    client.force_login(viewer)
    changelist = reverse("admin:accounts_apikey_changelist")
    assert client.get(changelist).status_code == 200
    client.post(changelist, {"action": "disable_keys", "_selected_action": [user.api_key.pk]})
    assert api_key_authenticate(raw).user == user


def test_operators_find_accounts_by_signup_address_and_see_which_are_unverified(client, operator):
    for n in range(2):
        form = {"email": f"farm{n}@example.com", "password1": PASSWORD, "password2": PASSWORD}
        Client(REMOTE_ADDR="198.51.100.23").post(reverse("accounts:signup"), form, REMOTE_ADDR="198.51.100.23")
    account_create(email="ada@example.com")
    changelist = reverse("admin:accounts_user_changelist")
    found = client.get(changelist, {"q": "198.51.100.23"}).content.decode()
    assert "farm0@example.com" in found and "farm1@example.com" in found and "ada@example.com" not in found
    unverified = client.get(changelist, {"email_verified_at__isempty": "1"}).content.decode()
    assert "farm0@example.com" in unverified and "ada@example.com" not in unverified
