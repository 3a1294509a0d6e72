import pytest
from django.urls import reverse

from accounts.models import ApiKey, ApiKeyAuditEvent, User
from tests.support.factories import PASSWORD, account_create

pytestmark = pytest.mark.django_db


def _signup(client, email, password1=PASSWORD, password2=None):
    return client.post(
        reverse("accounts:signup"),
        {"email": email, "password1": password1, "password2": password2 if password2 is not None else password1},
    )


def _counts():
    return User.objects.count(), ApiKey.objects.count(), ApiKeyAuditEvent.objects.count()


def test_signup_creates_account_and_key_and_lands_on_dashboard(client):
    response = _signup(client, "New.Person@Example.com")
    assert response.status_code == 302
    assert response.url == reverse("dashboard:index")
    user = User.objects.get()
    assert user.email == "new.person@example.com"
    assert user.api_key.is_enabled
    dashboard = client.get(response.url)
    assert dashboard.status_code == 200
    assert user.api_key.masked in dashboard.content.decode()


@pytest.mark.parametrize(
    "email,password1,password2,field,message",
    [
        ("ADA@example.COM", PASSWORD, None, "email", "An account with this email already exists"),
        ("fresh@example.com", "password", None, "password1", "This password is too common"),
        ("fresh@example.com", "abc12", None, "password1", "This password is too short"),
        ("fresh@example.com", "83749201937", None, "password1", "This password is entirely numeric"),
        ("fresh@example.com", "fresh@example.com", None, "password1", "too similar to the email"),
        ("not-an-email", PASSWORD, None, "email", "Enter a valid email address"),
        ("fresh@", PASSWORD, None, "email", "Enter a valid email address"),
        ("fresh@example.com", PASSWORD, PASSWORD + "x", "password2", "The two passwords do not match"),
        ("", PASSWORD, None, "email", "This field is required"),
    ],
)
def test_signup_errors_are_shown_and_create_nothing(client, email, password1, password2, field, message):
    account_create(email="ada@example.com")
    before = _counts()
    response = _signup(client, email, password1, password2)
    assert response.status_code == 200
    html = response.content.decode()
    assert message in html
    assert f'id="id_{field}_error"' in html
    assert 'aria-invalid="true"' in html
    assert _counts() == before
    assert "_auth_user_id" not in client.session


def test_login_is_case_insensitive_and_wrong_password_shows_an_error(client):
    account_create(email="ada@example.com")
    bad = client.post(reverse("accounts:login"), {"username": "ada@example.com", "password": "wrong"})
    assert bad.status_code == 200
    assert "Please enter a correct email and password" in bad.content.decode()
    assert "_auth_user_id" not in client.session

    good = client.post(reverse("accounts:login"), {"username": "ADA@Example.com", "password": PASSWORD})
    assert good.status_code == 302 and good.url == reverse("dashboard:index")


def test_logout_is_a_post_from_the_nav(client):
    user, _ = account_create(email="ada@example.com")
    client.force_login(user)
    page = client.get(reverse("dashboard:index")).content.decode()
    assert f'action="{reverse("accounts:logout")}"' in page
    assert client.get(reverse("accounts:logout")).status_code == 405  # GET does not log out
    response = client.post(reverse("accounts:logout"))
    assert response.status_code == 302
    assert client.get(reverse("dashboard:index")).status_code == 302


def test_dashboard_requires_login(client):
    response = client.get(reverse("dashboard:index"))
    assert response.status_code == 302
    assert response.url.startswith(reverse("accounts:login") + "?next=")


def test_dashboard_shows_both_sections_wallet_panel_base_url_and_curl_example(client):
    user, raw = account_create(email="ada@example.com")
    client.force_login(user)
    html = client.get(reverse("dashboard:index"), HTTP_HOST="127.0.0.1:8123").content.decode()
    assert "Account &amp; Wallet" in html and "Developer" in html
    assert "http://127.0.0.1:8123/v1" in html
    assert "curl http://127.0.0.1:8123/v1/models" in html
    assert 'id="api-key-dialog"' in html
    assert raw not in html  # the dashboard never renders the key itself, only the masked form


def test_dashboard_includes_the_billing_wallet_panel(client, settings, tmp_path):
    (tmp_path / "billing").mkdir()
    (tmp_path / "billing" / "wallet_panel.html").write_text("<p>wallet of {{ user.email }} via {{ request.path }}</p>")
    settings.TEMPLATES = [{**settings.TEMPLATES[0], "DIRS": [tmp_path, *settings.TEMPLATES[0]["DIRS"]]}]
    user, _ = account_create(email="ada@example.com")
    client.force_login(user)
    html = client.get(reverse("dashboard:index")).content.decode()
    assert "<p>wallet of ada@example.com via /dashboard/</p>" in html
