"""The fast scenarios of `make chaos` (chaos/scenarios.py) with their acceptance numbers: Stripe events racing,
Redis frozen under 16 streams, the Celery worker killed under 16 streams. One run of `chaos.run --fast` in its
own database and Redis; each test reads one acceptance check from its results."""

import json
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlparse, urlunparse

import pytest

from tests.support.processes import ROOT

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]


def _chaos_database_url() -> str:
    parsed = urlparse(os.environ["DATABASE_URL"])
    return urlunparse(parsed._replace(path=f"{parsed.path}_chaos_fast"))


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory) -> dict[str, dict]:
    results = tmp_path_factory.mktemp("chaos")
    done = subprocess.run(
        [sys.executable, "-m", "chaos.run", "--fast", "--name", "fast", "--results-dir", str(results),
         "--database-url", _chaos_database_url()],
        cwd=ROOT, capture_output=True, text=True, timeout=840,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    run = json.loads(Path(results / "fast.json").read_text())
    return {outcome["name"]: outcome for outcome in run["scenarios"]}


def check(outcomes: dict, scenario: str, name: str) -> None:
    found = [c for c in outcomes[scenario]["checks"] if c["check"] == name]
    assert found, f"{scenario} has no check {name!r}"
    (result,) = found
    assert result["met"], f"{scenario}: {name}: measured {result['measured']}, target {result['target']}"


def test_two_concurrent_stripe_events_for_an_unrecorded_session_both_answer_2xx(outcomes):
    check(outcomes, "stripe-concurrent", "events answered 2xx")


def test_two_concurrent_stripe_events_for_an_unrecorded_session_credit_once(outcomes):
    check(outcomes, "stripe-concurrent", "credits per session")


def test_redis_frozen_5s_other_streams_stall_at_most_half_a_second(outcomes):
    check(outcomes, "redis-frozen", "longest stall of a stream (s)")


def test_redis_frozen_5s_models_list_answers_or_fails_within_a_second(outcomes):
    check(outcomes, "redis-frozen", "GET /v1/models answers or fails (s)")


def test_celery_killed_every_stream_ends_normally(outcomes):
    check(outcomes, "celery-killed", "requests failed")


def test_celery_killed_every_stream_ends_within_a_second_of_its_workers_done(outcomes):
    check(outcomes, "celery-killed", "stream ends after its worker's done (s)")


def test_celery_killed_no_job_finished_by_a_worker_becomes_failed(outcomes):
    check(outcomes, "celery-killed", "jobs finished by workers become failed")


def test_celery_killed_is_running_again_within_10s(outcomes):
    check(outcomes, "celery-killed", "Celery running again (s)")


@pytest.mark.parametrize("scenario", ["stripe-concurrent", "redis-frozen", "celery-killed"])
def test_the_ledger_invariants_hold_after_the_scenario(outcomes, scenario):
    check(outcomes, scenario, "ledger invariant violations")
