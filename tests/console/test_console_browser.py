"""In headless Chromium against the real platform (daphne, Celery, PostgreSQL, Redis) and a real
`sogni-worker` process (scripted engine: instant, fixed text):

- an operator sees the online worker in the console, bans it, and it gets no more jobs;
- a user sees their usage chart and downloads the CSV.
"""

import csv
import io
import re

import httpx
import pytest
from playwright.sync_api import expect

from inference.models import Job, Worker
from tests.support.factories import PASSWORD, SMOLLM2, account_create
from tests.support.processes import wait_until
from tests.support.workers import wait_worker_online, worker_row

pytestmark = [pytest.mark.e2e, pytest.mark.browser, pytest.mark.timeout(300)]


SCRIPTED = {"engine": "scripted", "extra": ["--scripted-rate", "0", "--scripted-tokens", "6"]}


def _chat(url: str, key: str) -> httpx.Response:
    return httpx.post(
        f"{url}/v1/chat/completions",
        headers={"Authorization": f"Bearer {key}"},
        json={"model": SMOLLM2, "messages": [{"role": "user", "content": "Hello there"}], "max_tokens": 6},
        timeout=60,
    )


def _log_in(page, url: str, email: str, *, then: str) -> None:
    page.goto(f"{url}/login/?next={then}")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(re.compile(re.escape(f"{url}{then}")))


def test_operator_bans_an_online_worker_and_it_gets_no_more_jobs(live_platform, transactional_db, workers, page):
    url = live_platform.url
    customer = account_create(email="customer@example.com")
    admin = account_create(email="admin@example.com")
    type(admin.user).objects.filter(pk=admin.user.pk).update(is_staff=True, is_superuser=True)
    process = workers.start("rogue-box", **SCRIPTED)
    owner = workers.operator.user

    # Before the ban the worker serves the model.
    before = _chat(url, customer.key)
    assert before.status_code == 200, before.text
    assert Job.objects.get(public_id=before.json()["id"]).worker.name == "rogue-box"

    _log_in(page, url, "admin@example.com", then="/console/")
    row = page.locator('table[data-table="online-workers"] tr[data-worker="rogue-box"]')
    expect(row.locator("[data-state]")).to_have_text("online")
    expect(row.locator("[data-load]")).to_have_text("0/1")
    expect(page.locator("[data-online-count]")).to_have_text("1")

    page.on("dialog", lambda dialog: dialog.accept())
    row.get_by_role("button", name="Ban").click()
    expect(page.get_by_text("Worker rogue-box is banned with every worker of")).to_be_visible()
    expect(page.locator("[data-no-workers]")).to_be_visible()
    expect(page.locator("[data-online-count]")).to_have_text("0")

    # The platform closed its connection with 4008: the reference worker exits 1 rather than retrying.
    wait_until(lambda: not process.alive(), timeout=30, what="the banned worker process to exit")
    assert process.popen.returncode == 1, process.log()
    assert worker_row(owner=owner, name="rogue-box").status == Worker.Status.BANNED

    after = _chat(url, customer.key)
    assert after.status_code == 503, after.text
    assert after.json()["error"]["code"] == "no_worker_available"

    # Coming back under the same name is refused too, and still no job reaches it.
    again = workers.start("rogue-box", wait=False, **SCRIPTED)
    wait_until(lambda: not again.alive(), timeout=60, what="the restarted banned worker to be refused")
    assert again.popen.returncode == 1, again.log()
    assert _chat(url, customer.key).status_code == 503

    # A new name does not escape it: the ban is the owner's.
    renamed = workers.start("rogue-box-2", wait=False, **SCRIPTED)
    wait_until(lambda: not renamed.alive(), timeout=60, what="the renamed banned worker to be refused")
    assert renamed.popen.returncode == 1, renamed.log()
    assert "4008" in renamed.log()

    # Another operator's worker takes the model's jobs; the banned one never had another.
    honest = account_create(email="honest@example.com")
    wait_worker_online(workers.start("honest-box", wait=False, key=honest.key, **SCRIPTED), owner=honest.user)
    served = _chat(url, customer.key)
    assert served.status_code == 200, served.text
    assert Job.objects.get(public_id=served.json()["id"]).worker.name == "honest-box"
    assert Job.objects.filter(worker__name="rogue-box").count() == 1

    page.goto(f"{url}/console/workers/?state=banned")
    expect(page.locator('tr[data-worker="rogue-box"] [data-state]')).to_have_text("banned")
    expect(page.locator('tr[data-worker="rogue-box"]').get_by_role("button", name="Ban")).to_have_count(0)


def test_user_sees_their_usage_chart_and_downloads_the_csv(live_platform, transactional_db, workers, page):
    url = live_platform.url
    user = account_create(email="user@example.com")
    workers.start("box", **SCRIPTED)
    replies = [_chat(url, user.key) for _ in range(2)]
    assert [reply.status_code for reply in replies] == [200, 200], [reply.text for reply in replies]
    prompt = sum(reply.json()["usage"]["prompt_tokens"] for reply in replies)
    completion = sum(reply.json()["usage"]["completion_tokens"] for reply in replies)
    assert completion > 0

    _log_in(page, url, "user@example.com", then="/dashboard/")
    page.get_by_role("link", name="Usage").click()
    expect(page).to_have_url(f"{url}/usage/")
    chart = page.get_by_role("img", name=re.compile("Tokens per day"))
    expect(chart).to_be_visible()
    bar = chart.locator("rect.bar")
    expect(bar).to_have_count(1)
    expect(bar.locator("title")).to_have_text(re.compile(rf"{re.escape(SMOLLM2)}: {prompt + completion:,}$"))
    expect(page.locator('[data-total="requests"]')).to_have_text("2")

    with page.expect_download() as download_info:
        page.get_by_role("link", name="Download CSV").click()
    download = download_info.value
    assert re.fullmatch(r"sogni-usage-\d{4}-\d{2}-\d{2}-to-\d{4}-\d{2}-\d{2}\.csv", download.suggested_filename)
    with open(download.path(), encoding="utf-8") as handle:
        rows = list(csv.DictReader(io.StringIO(handle.read())))
    assert len(rows) == 1, rows
    assert rows[0]["model"] == SMOLLM2
    assert (rows[0]["requests"], rows[0]["prompt_tokens"], rows[0]["completion_tokens"]) == (
        "2",
        str(prompt),
        str(completion),
    )
