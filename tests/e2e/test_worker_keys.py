"""Key changes reach live worker sockets in every server process: two daphne processes share Redis and
PostgreSQL; a worker holds a socket on each; the key changes through one of them, or through the
service layer in this (third) process."""

import json
import time

import httpx
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from tests.support.factories import PASSWORD, SMOLLM2

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]


def worker_socket(url: str, key: str) -> ClientConnection:
    headers = {"Authorization": f"Bearer {key}"}
    return connect(url.replace("http://", "ws://") + "/ws/worker/", additional_headers=headers, open_timeout=10)


def hello(socket: ClientConnection, name: str) -> None:
    frame = {"type": "hello", "protocol": 1, "worker_name": name, "models": [SMOLLM2], "slots": 1}
    socket.send(json.dumps(frame))
    assert json.loads(socket.recv(timeout=10))["type"] == "welcome"


def closed(socket: ClientConnection, *, timeout: float = 5) -> tuple[int, float]:
    """The platform's close code and when it arrived."""
    try:
        while True:
            socket.recv(timeout=timeout)
    except ConnectionClosed as ended:
        return ended.rcvd.code, time.monotonic()


def dashboard_session(url: str, email: str) -> httpx.Client:
    browser = httpx.Client(base_url=url, timeout=10)
    browser.get("/login/")
    token = browser.cookies["csrftoken"]
    answer = browser.post("/login/", data={"username": email, "password": PASSWORD, "csrfmiddlewaretoken": token})
    assert answer.status_code == 302, answer.text
    return browser


def test_the_owner_disabling_its_key_on_one_server_closes_its_workers_on_both_within_two_seconds(
    two_daphnes, operator, catalog
):
    first, second = (process.extra["url"] for process in two_daphnes)
    browser = dashboard_session(second, operator.user.email)
    with worker_socket(first, operator.key) as on_first, worker_socket(second, operator.key) as on_second:
        hello(on_first, "on-first")
        hello(on_second, "on-second")
        started = time.monotonic()
        answer = browser.post("/dashboard/api-key/disable", headers={"X-CSRFToken": browser.cookies["csrftoken"]})
        assert answer.status_code == 200, answer.text
        results = [closed(on_first), closed(on_second)]

    assert [code for code, _ in results] == [4001, 4001]
    assert max(at for _, at in results) - started < 2
    browser.close()


def test_an_operator_regenerating_the_key_closes_workers_on_another_server_within_two_seconds(
    two_daphnes, operator, catalog
):
    from accounts.services import api_key_regenerate

    first = two_daphnes[0].extra["url"]
    with worker_socket(first, operator.key) as socket:
        hello(socket, "elsewhere")
        started = time.monotonic()
        api_key_regenerate(api_key=operator.user.api_key, actor=None)
        code, at = closed(socket)

    assert code == 4001
    assert at - started < 2
