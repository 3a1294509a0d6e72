"""The wallet panel in headless Chromium (tests/support/browser.py) against a real daphne.

This module starts its own daphne rather than using `live_platform`, because Buy Spark needs
STRIPE_API_BASE in the server's environment, pointed at a local stand-in for Stripe's API.
"""

import datetime
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

import pytest

from accounts.services import user_signup
from billing.models import TopUp
from tests.support.factories import PASSWORD, verified_signup
from tests.support.processes import free_port, start_daphne

pytestmark = [pytest.mark.browser, pytest.mark.e2e]


class StripeStandIn(BaseHTTPRequestHandler):
    """Answers POST /v1/checkout/sessions like Stripe; GET /pay/<id> is the 'hosted checkout page'."""

    requests: list[dict] = []

    def log_message(self, *args):
        pass

    def _send(self, status: int, body: str, content_type: str) -> None:
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self):
        if self.path != "/v1/checkout/sessions":
            return self._send(404, json.dumps({"error": {"message": "not found"}}), "application/json")
        form = parse_qs(self.rfile.read(int(self.headers["Content-Length"])).decode())
        session_id = f"cs_test_{len(self.requests) + 1}"
        self.requests.append({"authorization": self.headers.get("Authorization"), "form": form, "id": session_id})
        host = f"http://127.0.0.1:{self.server.server_address[1]}"
        body = {"id": session_id, "object": "checkout.session", "url": f"{host}/pay/{session_id}"}
        return self._send(200, json.dumps(body), "application/json")

    def do_GET(self):
        return self._send(200, f"<h1>Stand-in Stripe Checkout {self.path.rsplit('/', 1)[-1]}</h1>", "text/html")


@pytest.fixture(scope="module")
def stripe_standin():
    StripeStandIn.requests = []
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), StripeStandIn)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def platform_url(live_env, stripe_standin):
    """A real daphne reading STRIPE_API_BASE from its environment, so Buy Spark reaches the stand-in."""
    daphne = start_daphne({**live_env, "STRIPE_API_BASE": f"http://127.0.0.1:{stripe_standin.server_address[1]}"})
    yield daphne.extra["url"]
    daphne.stop()


def log_in(page, url: str, email: str) -> None:
    page.goto(f"{url}/login/")
    page.fill("input[name=username]", email)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{url}/dashboard/")


def spark_available(page) -> str:
    return page.locator('tr[data-token-type="spark"] td.available').inner_text().strip()


def test_daily_bonus_rises_once_then_refuses_with_the_next_claim_time(
    transactional_db, platform_url, browser_context, page
):
    verified_signup(email="bonus@example.com", password=PASSWORD)
    first = page
    log_in(first, platform_url, "bonus@example.com")
    second = browser_context.new_page()  # a second tab, still showing the button
    second.goto(f"{platform_url}/dashboard/")
    assert spark_available(first) == "100"

    first.get_by_role("button", name="Claim daily bonus").click()
    first.wait_for_load_state()
    assert "Daily bonus claimed: +50 Spark" in first.locator(".messages").inner_text()
    assert spark_available(first) == "150"
    assert first.get_by_role("button", name="Claim daily bonus").count() == 0

    second.get_by_role("button", name="Claim daily bonus").click()
    second.wait_for_load_state()
    tomorrow = datetime.datetime.now(datetime.UTC).date() + datetime.timedelta(days=1)
    refusal = second.locator(".messages").inner_text()
    assert f"Already claimed today. Next daily bonus at {tomorrow:%Y-%m-%d} 00:00 UTC" in refusal
    assert spark_available(second) == "150"
    assert f"Next daily bonus at {tomorrow:%Y-%m-%d} 00:00 UTC" in second.locator(".next-claim").inner_text()


def test_buy_spark_redirects_to_the_checkout_url_stripe_returned(transactional_db, platform_url, page, stripe_standin):
    user = user_signup(email="buyer@example.com", password=PASSWORD)
    log_in(page, platform_url, "buyer@example.com")

    page.get_by_role("button", name="Buy 2,000 Spark for $10").click()

    standin = f"http://127.0.0.1:{stripe_standin.server_address[1]}"
    page.wait_for_url(f"{standin}/pay/cs_test_*")
    sent = StripeStandIn.requests[-1]
    assert page.url == f"{standin}/pay/{sent['id']}"
    assert "Stand-in Stripe Checkout" in page.content()
    assert sent["authorization"] == "Bearer sk_test_local"
    assert sent["form"]["line_items[0][price_data][unit_amount]"] == ["1000"]
    assert sent["form"]["metadata[user_id]"] == [str(user.pk)]
    assert sent["form"]["success_url"][0].startswith(f"{platform_url}/dashboard/")
    topup = TopUp.objects.get(session_id=sent["id"])
    assert (topup.user, topup.usd_cents, topup.status) == (user, 1000, "pending")
