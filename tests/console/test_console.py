"""The operator console: staff only; what it shows for known rows; its three actions through the owners' services."""

import re
from decimal import Decimal

import pytest
from django.test import Client
from django.urls import reverse

from accounts.models import ApiKeyAuditEvent
from accounts.selectors import api_key_authenticate
from accounts.services import api_key_reveal
from billing.models import LedgerEntry, Wallet
from inference.models import Job, Worker
from inference.services import job_dispatch
from tests.inference.platform import job_queued, worker_online
from tests.support.factories import QWEN, SMOLLM2
from tests.usage.factories import days_ago, job_make, sogni_grant, worker_make

pytestmark = pytest.mark.django_db

PAGES = [
    ("console:overview", {}),
    ("console:workers", {}),
    ("console:jobs", {}),
    ("console:revenue", {}),
    ("console:accounts", {}),
]


@pytest.mark.parametrize(("name", "kwargs"), PAGES)
def test_pages_need_staff(client, make_user, name, kwargs):
    url = reverse(name, kwargs=kwargs)
    anonymous = client.get(url)
    assert anonymous.status_code == 302 and anonymous["Location"].startswith(reverse("admin:login"))
    client.force_login(make_user("someone@example.com"))
    member = client.get(url)
    assert member.status_code == 302 and member["Location"].startswith(reverse("admin:login"))


@pytest.mark.parametrize(("name", "kwargs"), PAGES)
def test_staff_see_every_page(ops, catalog, name, kwargs):
    html = ops.get(reverse(name, kwargs=kwargs)).content.decode()
    for admin_page in ("accounts_user", "accounts_apikey", "billing_wallet", "inference_llmmodel", "billing_sognirate"):
        assert reverse(f"admin:{admin_page}_changelist") in html
    assert reverse("admin:billing_stripeevent_changelist") in html


def test_non_staff_cannot_ban(client, catalog, make_user):
    worker = worker_online(make_user("owner@example.com"), "w")
    client.force_login(make_user("mallory@example.com"))
    client.post(reverse("console:worker-ban", args=[worker.pk]))
    worker.refresh_from_db()
    assert worker.status == Worker.Status.ONLINE


def test_overview_shows_online_workers_load_queue_depth_and_jobs_by_status(ops, catalog, make_user):
    owner, user = make_user("owner@example.com"), make_user("user@example.com")
    busy = worker_online(owner, "busy-box", slots=4)
    Worker.objects.filter(pk=busy.pk).update(in_flight=3)
    worker_make(owner=owner, name="gone-box")  # offline: not listed
    for _ in range(2):
        job_make(user=user, model_id=QWEN, status=Job.Status.QUEUED, settle=False)
    job_make(user=user, status=Job.Status.FAILED, settle=False)
    job_make(user=user, at=days_ago(3), settle=False)

    html = ops.get(reverse("console:overview")).content.decode()

    assert re.search(r"data-online-count>1<", html)
    assert re.search(r"data-load-total>3/4<", html)
    assert 'data-worker="busy-box"' in html and 'data-worker="gone-box"' not in html
    queue = dict(re.findall(r'<tr data-model="([^"]+)">.*?data-queued>(\d+)<', html, re.S))
    assert queue[QWEN] == "2" and queue[SMOLLM2] == "0"
    statuses = {
        s: (h, d) for s, h, d in re.findall(r'data-status="(\w+)">.*?data-hour>(\d+)<.*?data-day>(\d+)<', html, re.S)
    }
    assert statuses["queued"] == ("2", "2")
    assert statuses["failed"] == ("1", "1")
    assert statuses["completed"] == ("0", "0"), "the 3-day-old job is outside both windows"


def test_ban_sets_status_and_dispatch_never_picks_the_banned_worker(ops, catalog, make_user):
    owner, user = make_user("owner@example.com"), make_user("user@example.com")
    banned = worker_online(owner, "bad-box", slots=4)
    sibling = worker_online(owner, "bad-box-2", slots=4)
    good = worker_online(make_user("other-owner@example.com"), "good-box", slots=1)
    # bad-box would win on load (least loaded, most slots): only the ban keeps jobs off it.
    response = ops.post(reverse("console:worker-ban", args=[banned.pk]), {"next": reverse("console:overview")})
    assert response.status_code == 302 and response["Location"] == reverse("console:overview")
    banned.refresh_from_db()
    sibling.refresh_from_db()
    # A ban is the owner's: every worker of that account is banned with it, as its account page says.
    assert banned.status == sibling.status == Worker.Status.BANNED
    assert "data-owner-banned" in ops.get(reverse("console:account", args=[owner.pk])).content.decode()

    first = job_queued(user)
    assert job_dispatch(job_id=first.id) is True
    first.refresh_from_db()
    assert first.worker_id == good.pk

    second = job_queued(user)  # good-box's only slot is taken now
    assert job_dispatch(job_id=second.id) is False
    second.refresh_from_db()
    assert second.status == Job.Status.QUEUED and second.worker_id is None
    banned.refresh_from_db()
    assert banned.in_flight == 0

    workers_page = ops.get(reverse("console:workers")).content.decode()
    row = re.search(r'data-worker="bad-box">(.*?)</tr>', workers_page, re.S).group(1)
    assert "data-state>banned<" in row and 'data-action="ban"' not in row


def test_ban_needs_a_post_with_a_csrf_token(staff, catalog, make_user):
    worker = worker_online(make_user("owner@example.com"), "w")
    client = Client(enforce_csrf_checks=True)
    client.force_login(staff)
    assert client.get(reverse("console:worker-ban", args=[worker.pk])).status_code == 405
    assert client.post(reverse("console:worker-ban", args=[worker.pk])).status_code == 403
    worker.refresh_from_db()
    assert worker.status == Worker.Status.ONLINE


def test_staff_without_the_permission_cannot_act(client, catalog, make_user):
    worker = worker_online(make_user("owner@example.com"), "w")
    junior = make_user("junior@example.com")
    junior.is_staff = True
    junior.save(update_fields=["is_staff"])
    client.force_login(junior)
    assert client.get(reverse("console:overview")).status_code == 200
    assert client.post(reverse("console:worker-ban", args=[worker.pk])).status_code == 403
    worker.refresh_from_db()
    assert worker.status == Worker.Status.ONLINE


def test_disable_key_is_audited_with_the_operator_and_the_key_stops_working(ops, staff, make_user):
    user = make_user("abuser@example.com")
    raw = api_key_reveal(api_key=user.api_key, actor=user)
    response = ops.post(reverse("console:key-disable", args=[user.pk]), {"reason": "abuse"})
    assert response.status_code == 302
    user.api_key.refresh_from_db()
    assert not user.api_key.is_enabled and user.api_key.disabled_reason == "abuse"
    event = ApiKeyAuditEvent.objects.filter(api_key=user.api_key, action="disabled").get()
    assert event.actor == staff
    assert api_key_authenticate(raw) is None
    page = ops.get(reverse("console:account", args=[user.pk])).content.decode()
    assert "data-key-state>disabled<" in page

    ops.post(reverse("console:key-enable", args=[user.pk]))
    assert api_key_authenticate(raw) is not None


def test_wallet_adjust_writes_one_ledger_entry_with_reason_and_operator(ops, staff, make_user):
    user = make_user("lucky@example.com")
    url = reverse("console:wallet-adjust", args=[user.pk, "spark"])
    form = {"amount": "12.5", "reason": "outage credit", "key": "spark-abc"}
    ops.post(url, form)
    ops.post(url, form)  # the same form submitted twice
    entries = LedgerEntry.objects.filter(wallet__user=user, kind=LedgerEntry.Kind.ADJUSTMENT)
    assert [(e.amount, e.memo, e.operator) for e in entries] == [(Decimal("12.5"), "outage credit", staff)]
    assert Wallet.objects.get(user=user, token_type="spark").balance == Decimal("112.5")  # starter grant 100

    before = LedgerEntry.objects.count()
    ops.post(url, {"amount": "5", "reason": "", "key": "spark-def"})
    ops.post(url, {"amount": "-1000", "reason": "too much", "key": "spark-ghi"})
    ops.post(url, {"amount": "NaN", "reason": "bad", "key": "spark-jkl"})
    assert LedgerEntry.objects.count() == before
    bad_type = ops.post(reverse("console:wallet-adjust", args=[user.pk, "gold"]), form)
    assert bad_type.status_code == 404
    messages = [str(m) for m in ops.get(reverse("console:account", args=[user.pk])).context["messages"]]
    assert any("Not adjusted" in m for m in messages)


def test_job_filters(ops, catalog, make_user):
    alice, bob = make_user("alice@example.com"), make_user("bob@example.com")
    worker = worker_make(owner=bob, name="bobs-box")
    a1 = job_make(user=alice, model_id=QWEN, settle=False, status=Job.Status.FAILED)
    a2 = job_make(user=alice, settle=False, worker=worker)
    b1 = job_make(user=bob, settle=False, worker=worker, status=Job.Status.CANCELLED)

    def listed(**query) -> set[str]:
        html = ops.get(reverse("console:jobs"), query).content.decode()
        return set(re.findall(r'<tr data-job="([^"]+)"', html))

    assert listed() == {a1.public_id, a2.public_id, b1.public_id}
    assert listed(status="failed") == {a1.public_id}
    assert listed(model=SMOLLM2) == {a2.public_id, b1.public_id}
    assert listed(user="ALICE@") == {a1.public_id, a2.public_id}
    assert listed(worker="bobs-box") == {a2.public_id, b1.public_id}
    assert listed(worker=str(worker.pk), status="cancelled") == {b1.public_id}
    assert listed(status="nonsense") == {a1.public_id, a2.public_id, b1.public_id}
    assert listed(worker="9" * 30) == set()
    assert listed(user="a\x00") == {a1.public_id, a2.public_id, b1.public_id}, "an invalid filter is ignored, not a 500"


def test_job_timeline_shows_each_step_ttft_duration_tokens_cost_and_error(ops, catalog, make_user):
    user = make_user("alice@example.com")
    worker = worker_make(owner=make_user("op@example.com"), name="box")
    job = job_make(
        user=user,
        worker=worker,
        prompt=100,
        completion=200,
        ttft_ms=400,
        generation_ms=1600,
        status=Job.Status.FAILED,
        error_code="worker_disconnected",
        error_message="The worker serving this request disconnected.",
    )
    html = ops.get(reverse("console:job", args=[job.public_id])).content.decode()
    assert len(re.findall(r'<li class="" data-step', html)) == 4
    assert re.search(r"data-ttft>400 ms<", html)
    assert re.search(r"data-duration>2000 ms<", html)
    assert "0.042 spark ($0.00021)" in html
    assert "worker_disconnected" in html and "disconnected." in html
    assert ops.get(reverse("console:job", args=["chatcmpl-missing"])).status_code == 404


def test_revenue_per_day_sums_charges_in_usd_and_rewards(ops, catalog, sogni_rate, make_user):
    user, owner = make_user("alice@example.com"), make_user("op@example.com")
    sogni_grant(user=user)
    worker = worker_make(owner=owner, name="box")
    job_make(user=user, worker=worker, at=days_ago(1), prompt=100, completion=200)  # $0.00021 in Spark
    job_make(user=user, worker=worker, at=days_ago(1), prompt=1000, completion=2000, token_type="sogni")  # $0.0021
    job_make(user=user, at=days_ago(0, hour=0), prompt=100, completion=100)  # $0.00012, no worker: no reward

    html = ops.get(reverse("console:revenue")).content.decode()

    def day(row_day) -> str:
        return re.search(rf'<tr data-day="{row_day.date().isoformat()}">(.*?)</tr>', html, re.S).group(1)

    # Rewards: 70% of the USD charged, at $0.01 per SOGNI: 0.0147 + 0.147 SOGNI = $0.001617.
    assert re.findall(r'<td class="num">([^<]*)</td>', day(days_ago(1))) == ["$0.002310", "0.1617", "$0.001617"]
    assert re.findall(r'<td class="num">([^<]*)</td>', day(days_ago(0))) == ["$0.000120", "0", "$0.00"]
    assert re.search(r"data-total-revenue>\$0\.002430<", html)
    assert html.count('<rect class="bar"') == 3


def test_a_workers_claims_and_discrepancies_are_shown_on_its_job_and_the_workers_page(ops, catalog, make_user):
    worker = worker_make(owner=make_user("op@example.com"), name="inflater")
    Worker.objects.filter(pk=worker.pk).update(discrepancies=3)
    job = job_make(
        user=make_user("alice@example.com"),
        worker=worker,
        prompt=25,
        completion=1,
        claimed_prompt_tokens=10_000_000,
        claimed_completion_tokens=65_536,
        claim_discrepancy=True,
        token_counting="exact",
        output_bytes=1,
    )
    html = ops.get(reverse("console:job", args=[job.public_id])).content.decode()
    assert re.search(r"data-claims>10000000 / 65536 <strong data-discrepancy>", html)
    assert "data-token-counting>exact<" in html and "1 bytes relayed" in html
    workers = ops.get(reverse("console:workers")).content.decode()
    row = re.search(r'data-worker="inflater".*?</tr>', workers, re.S).group(0)
    assert "data-discrepancies>3<" in row
