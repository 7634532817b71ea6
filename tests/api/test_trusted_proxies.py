"""Forwarded headers are believed from `trusted_proxies` only: by default from nobody, not even
a peer on 127.0.0.1 (anyone on the host could otherwise pick the address the failed-login
throttle counts, or claim https)."""

from __future__ import annotations

import base64
from pathlib import Path

import httpx
import pytest

from support import RunningServer, start_server, stop_server

NO_DATABASE_URL: dict[str, str | None] = {"DATABASE_URL": None, "AISERVICE_DATABASE_URL": None}


@pytest.fixture(scope="module", params=["nobody", "localhost"])
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    env = dict(NO_DATABASE_URL)
    if request.param == "localhost":
        env["AISERVICE_TRUSTED_PROXIES"] = '["127.0.0.1"]'
    home: Path = tmp_path_factory.mktemp(f"proxies-{request.param}")
    running = start_server(home, env=env)
    yield request.param, running
    stop_server(running)


def _failed_login(server: RunningServer, number: int, forwarded_for: str) -> int:
    # A different unknown account each time: only the per-address limit (20 a minute) counts.
    credentials = base64.b64encode(f"nobody-{number}@example.com:wrong".encode()).decode()
    answer = httpx.get(
        f"{server.api_url}/models",
        headers={"Authorization": f"Basic {credentials}", "X-Forwarded-For": forwarded_for},
        timeout=30,
    )
    return answer.status_code


def test_the_address_a_peer_forwards_counts_only_from_a_trusted_proxy(server) -> None:
    trusted, running = server
    statuses = [_failed_login(running, n, f"203.0.113.{n}") for n in range(21)]
    if trusted == "nobody":
        # Every try is 127.0.0.1's, whatever it claims: the 21st is over the address's limit.
        assert statuses == [401] * 20 + [429]
    else:
        assert statuses == [401] * 21  # 21 addresses, one failure each


def test_https_is_believed_only_from_a_trusted_proxy(server) -> None:
    trusted, running = server
    form = httpx.get(
        f"{running.base_url}/dashboard/login", headers={"X-Forwarded-Proto": "https"}, timeout=30
    )
    secure = "secure" in form.headers["set-cookie"].lower()
    assert secure is (trusted == "localhost")
