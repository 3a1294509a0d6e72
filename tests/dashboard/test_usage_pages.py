"""The Usage page, its CSV and the Workers page, against known jobs, holds and ledger rows."""

import csv
import io
import re
from decimal import Decimal

import pytest
from django.urls import reverse
from django.utils import timezone

from inference.models import Job, Worker
from tests.support.factories import QWEN, SMOLLM2
from tests.usage.factories import days_ago, job_make, sogni_grant, worker_make

pytestmark = pytest.mark.django_db


@pytest.fixture
def history(catalog, sogni_rate, make_user):
    """Alice's last 30 days (and one older job), plus Bob's job that must never show up for her."""
    alice, bob = make_user("alice@example.com"), make_user("bob@example.com")
    sogni_grant(user=alice)
    job_make(user=alice, model_id=SMOLLM2, at=days_ago(2, hour=1), prompt=100, completion=200)
    job_make(user=alice, model_id=SMOLLM2, at=days_ago(2, hour=23), prompt=50, completion=30, reasoning=10)
    job_make(user=alice, model_id=QWEN, at=days_ago(2), prompt=1000, completion=2000, token_type="sogni")
    job_make(user=alice, model_id=SMOLLM2, at=days_ago(0, hour=0), prompt=20, completion=5, status=Job.Status.FAILED)
    job_make(user=alice, model_id=SMOLLM2, at=days_ago(40), prompt=999, completion=999)
    job_make(user=bob, model_id=SMOLLM2, at=days_ago(0, hour=0), prompt=7777, completion=7777)
    return alice, bob


def _login(client, user):
    client.force_login(user)
    return client


def _csv(response) -> list[dict]:
    return list(csv.DictReader(io.StringIO(response.content.decode())))


def test_csv_has_one_row_per_day_and_model_with_exact_tokens_and_spend(client, history):
    alice, _ = history
    response = _login(client, alice).get(reverse("dashboard:usage-export"))

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    assert re.fullmatch(r'attachment; filename="sogni-usage-[0-9-]+-to-[0-9-]+\.csv"', response["Content-Disposition"])
    d2, d0 = days_ago(2).date().isoformat(), days_ago(0).date().isoformat()
    assert _csv(response) == [
        # 100/200 and 50/30 tokens at $0.30/$0.90 per 1M: $0.00021 + $0.000042, at $0.005 per Spark.
        {"date": d2, "model": QWEN, "requests": "1", "prompt_tokens": "1000", "completion_tokens": "2000",
         "reasoning_tokens": "0", "total_tokens": "3000", "spend_spark": "0", "spend_sogni": "0.21",
         "spend_usd": "0.0021"},
        {"date": d2, "model": SMOLLM2, "requests": "2", "prompt_tokens": "150", "completion_tokens": "230",
         "reasoning_tokens": "10", "total_tokens": "380", "spend_spark": "0.0504", "spend_sogni": "0",
         "spend_usd": "0.000252"},
        # The failed job still pays for the 5 tokens it delivered.
        {"date": d0, "model": SMOLLM2, "requests": "1", "prompt_tokens": "20", "completion_tokens": "5",
         "reasoning_tokens": "0", "total_tokens": "25", "spend_spark": "0.0021", "spend_sogni": "0",
         "spend_usd": "0.0000105"},
    ]  # fmt: skip


def test_csv_of_a_user_without_requests_is_only_the_header(client, catalog, make_user, history):
    carol = make_user("carol@example.com")
    response = _login(client, carol).get(reverse("dashboard:usage-export"))
    assert response.content.decode().splitlines() == [
        "date,model,requests,prompt_tokens,completion_tokens,reasoning_tokens,total_tokens,spend_spark,spend_sogni,spend_usd"
    ]


def test_usage_page_shows_totals_tables_and_a_bar_per_day_and_model(client, history):
    alice, _ = history
    html = _login(client, alice).get(reverse("dashboard:usage")).content.decode()

    assert re.search(r'data-total="requests">4<', html)
    assert re.search(r'data-total="tokens">3405<', html)  # 3000 + 380 + 25: Bob's and the 40-day-old job excluded
    assert "0.0525 Spark · 0.21 SOGNI" in html
    svg = html[html.index("<svg") : html.index("</svg>")]
    bars = re.findall(r"<rect class=\"bar\"[^>]*><title>([^<]*)</title>", svg)
    day2 = f"{days_ago(2):%b} {days_ago(2).day}"
    today = f"{days_ago(0):%b} {days_ago(0).day}"
    assert sorted(bars) == sorted([f"{day2} · {QWEN}: 3,000", f"{day2} · {SMOLLM2}: 380", f"{today} · {SMOLLM2}: 25"])
    assert "7777" not in html and "7,777" not in html


def test_usage_chart_switches_to_spend_and_requests(client, history):
    alice, _ = history
    client = _login(client, alice)
    spend = client.get(reverse("dashboard:usage"), {"metric": "spend_usd"}).content.decode()
    assert re.search(rf"· {re.escape(QWEN)}: \$0\.002100<", spend)
    requests = client.get(reverse("dashboard:usage"), {"metric": "requests"}).content.decode()
    assert re.search(rf"· {re.escape(SMOLLM2)}: 2<", requests)
    assert client.get(reverse("dashboard:usage"), {"metric": "bogus"}).status_code == 200


@pytest.mark.parametrize("name", ["dashboard:usage", "dashboard:usage-export", "dashboard:workers"])
def test_user_pages_need_a_login(client, db, name):
    response = client.get(reverse(name))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("accounts:login"))


def test_workers_page_lists_my_workers_with_jobs_tokens_speed_and_earnings(client, catalog, sogni_rate, make_user):
    owner, customer, other = make_user("op@example.com"), make_user("c@example.com"), make_user("x@example.com")
    mine = worker_make(owner=owner, name="box-a", status=Worker.Status.ONLINE, slots=2, in_flight=1)
    Worker.objects.filter(pk=mine.pk).update(last_heartbeat=timezone.now())
    worker_make(owner=owner, name="box-b")
    theirs = worker_make(owner=other, name="not-mine")
    # 200 tokens in 1 s and 100 tokens in 1 s: 150 tokens/s while generating.
    job_make(user=customer, worker=mine, prompt=100, completion=200, generation_ms=1000)
    # (billing may key a job's hold and ledger rows by its uuid instead of its public id)
    job_make(user=customer, worker=mine, prompt=100, completion=100, generation_ms=1000, hold_key="uuid")
    job_make(user=customer, worker=mine, prompt=10, completion=3, status=Job.Status.FAILED)
    job_make(user=customer, worker=theirs, prompt=100, completion=500)

    html = _login(client, owner).get(reverse("dashboard:workers")).content.decode()

    rows = dict(re.findall(r'<tr data-worker="([^"]+)">(.*?)</tr>', html, re.S))
    assert set(rows) == {"box-a", "box-b"}
    assert re.search(r"data-state>online<", rows["box-a"])
    assert re.search(r"data-state>offline<", rows["box-b"])
    assert re.search(r"data-jobs>2<", rows["box-a"])
    assert re.search(r"data-tokens>300<", rows["box-a"])
    assert ">150.0<" in rows["box-a"]
    assert ">1/2<" in rows["box-a"]
    # 70% of ($0.00021 + $0.00012) at $0.01 per SOGNI = 0.0147 + 0.0084 SOGNI; the failed job earns nothing.
    assert re.search(r"data-earned>0.0231<", rows["box-a"])
    assert re.search(r"data-earned>0<", rows["box-b"])
    assert "data-earned>0.0231 SOGNI<" in html
    # New workers' earnings wait in escrow for the probation period (WORKER_PROBATION_DAYS).
    assert "data-available>0 SOGNI<" in html
    assert "data-escrowed>0.0231 SOGNI<" in html


def test_workers_page_without_workers_explains_how_to_start_one(client, make_user, db):
    html = _login(client, make_user("new@example.com")).get(reverse("dashboard:workers")).content.decode()
    assert "You run no workers yet" in html and "sogni-worker --platform" in html


def test_dashboard_links_to_usage_and_workers_and_staff_see_the_console(client, make_user, db):
    user = make_user("dash@example.com")
    html = _login(client, user).get(reverse("dashboard:index")).content.decode()
    assert f'href="{reverse("dashboard:usage")}"' in html and f'href="{reverse("dashboard:workers")}"' in html
    assert reverse("console:overview") not in html
    user.is_staff = True
    user.save(update_fields=["is_staff"])
    assert reverse("console:overview") in client.get(reverse("dashboard:index")).content.decode()


def test_spend_amounts_are_decimal_exact(history):
    from inference.usage.selectors import usage_rows

    alice, _ = history
    rows = usage_rows(user=alice)
    assert sum((row.spend["spark"] for row in rows), Decimal(0)) == Decimal("0.0525")
    assert all(isinstance(row.spend_usd, Decimal) for row in rows)
