"""GET /healthz against real daphne processes: one healthy, and ones whose Redis or database is unreachable."""

import httpx
import pytest

from tests.support.processes import BIN, free_port, start_process, wait_until

# django_db: pytest-django creates the test database only for sessions with a test that asks for it.
pytestmark = [pytest.mark.e2e, pytest.mark.django_db]


def _daphne_answering(env: dict[str, str]):
    port = free_port()
    process = start_process(
        "daphne-healthz",
        [str(BIN / "daphne"), "-b", "127.0.0.1", "-p", str(port), "sogni_platform.asgi:application"],
        env,
    )
    url = f"http://127.0.0.1:{port}"

    def answering() -> bool:
        if not process.alive():
            raise RuntimeError(f"daphne exited:\n{process.log()}")
        try:
            httpx.get(f"{url}/healthz", timeout=5)
            return True
        except httpx.HTTPError:
            return False

    try:
        wait_until(answering, timeout=60, what="daphne answering")
    except BaseException:
        process.stop()
        raise
    return process, url


def test_healthz_is_200_when_database_and_channel_layer_are_up(live_platform):
    response = httpx.get(f"{live_platform.url}/healthz", timeout=10)
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": True, "channel_layer": True}


def test_healthz_is_503_when_the_channel_layer_is_unreachable(live_env):
    closed = free_port()  # nothing listens here
    process, url = _daphne_answering({**live_env, "REDIS_URL": f"redis://127.0.0.1:{closed}/0"})
    try:
        response = httpx.get(f"{url}/healthz", timeout=15)
    finally:
        process.stop()
    assert response.status_code == 503, process.log()
    assert response.json() == {"status": "unavailable", "database": True, "channel_layer": False}


def test_healthz_is_503_when_the_database_is_unreachable(live_env):
    closed = free_port()
    process, url = _daphne_answering({**live_env, "DATABASE_URL": f"postgres://postgres@127.0.0.1:{closed}/nowhere"})
    try:
        response = httpx.get(f"{url}/healthz", timeout=15)
    finally:
        process.stop()
    assert response.status_code == 503, process.log()
    assert response.json() == {"status": "unavailable", "database": False, "channel_layer": True}
