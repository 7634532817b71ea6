"""Budgets with alerts against real servers, on SQLite and PostgreSQL: alerts at 50/80/100 %
received by a real local HTTP listener exactly once each, the webhook retried, 429
budget_exceeded (envelope, Retry-After) on every model route, soft budgets only alerting, key
versus user budgets, overshoot under concurrency, the admin API, and the CLI on a running server.

The servers price the local model at $1000 per million input tokens and nothing for output, so
each request of the same prompt costs the same known amount (`COST`, measured once). Tests wait
for a condition with a deadline: spending shows in `GET /v1/admin/budgets` once the request is
recorded, alerts once the ledger's batch is written (flushed every 0.2 s here).
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from aiservice.governance.budget_periods import period_start
from aiservice.store.database import SQLITE_FILE_NAME, Database
from aiservice.store.usage import UsageStore
from support import (
    MASTER_KEY,
    PostgresDatabases,
    RunningServer,
    admin_add_user,
    assert_error_envelope,
    basic_auth,
    bearer,
    new_email,
    run_in_thread,
    server_cli,
    start_server,
    stop_server,
    wait_until,
)

MODEL = "smollm2-135m-instruct"
PRICE_PER_TOKEN = 0.001  # USD per input token: $1000 per million
PASSWORD = "budget-password"
QUESTION = {"model": MODEL, "messages": [{"role": "user", "content": "Say hi."}], "max_tokens": 1}


class WebhookListener:
    """A real HTTP server that takes the alerts' POSTs; answers 500 to a budget's first
    `fail_first[budget_id]` attempts."""

    def __init__(self) -> None:
        self.attempts: list[dict[str, Any]] = []  # every POST, in order
        self.fail_first: dict[str, int] = {}
        self.lock = threading.Lock()
        listener = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with listener.lock:
                    listener.attempts.append(body)
                    remaining = listener.fail_first.get(body["budget_id"], 0)
                    listener.fail_first[body["budget_id"]] = remaining - 1
                self.send_response(500 if remaining > 0 else 204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/alerts"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def of(self, budget_id: str) -> list[dict[str, Any]]:
        with self.lock:
            return [body for body in self.attempts if body["budget_id"] == budget_id]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@dataclass
class Priced:
    server: RunningServer
    listener: WebhookListener
    cost: float = 0.0  # USD of one QUESTION
    http: httpx.Client = field(init=False)

    def __post_init__(self) -> None:
        self.http = httpx.Client(base_url=self.server.base_url, timeout=120)


@pytest.fixture(scope="module")
def listener() -> Iterator[WebhookListener]:
    running = WebhookListener()
    yield running
    running.close()


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def priced(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    postgres_databases: PostgresDatabases,
    listener: WebhookListener,
) -> Iterator[Priced]:
    home: Path = tmp_path_factory.mktemp(f"aiservice-budgets-{request.param}")
    (home / "config.toml").write_text(
        f'[[models]]\nname = "{MODEL}"\nprice_input_per_1m = {PRICE_PER_TOKEN * 1e6}\n'
        "price_output_per_1m = 0\n",
        encoding="utf-8",
    )
    env: dict[str, str | None] = {
        "DATABASE_URL": None,
        "AISERVICE_DATABASE_URL": None,
        "AISERVICE_ALERT_WEBHOOK_URL": listener.url,
        "AISERVICE_LEDGER_FLUSH_S": "0.2",
        "AISERVICE_BUDGET_REFRESH_S": "0.5",
    }
    if request.param == "postgres":
        env["DATABASE_URL"] = postgres_databases.create()
    server = start_server(home, env=env)
    setup = Priced(server, listener)
    try:
        answer = setup.http.post("/v1/chat/completions", json=QUESTION, headers=bearer(MASTER_KEY))
        assert answer.status_code == 200, answer.text
        setup.cost = answer.json()["usage"]["prompt_tokens"] * PRICE_PER_TOKEN
        yield setup
    finally:
        setup.http.close()
        stop_server(server)


# -- helpers -----------------------------------------------------------------------------------


def admin(priced: Priced, method: str, path: str, **kwargs: Any) -> httpx.Response:
    return priced.http.request(method, path, headers=bearer(MASTER_KEY), **kwargs)


def new_user(priced: Priced) -> str:
    email = new_email("budget")
    admin_add_user(priced.server, email, PASSWORD)
    return email


def new_key(priced: Priced, email: str) -> tuple[str, str]:
    """A new key of `email`: (its id, the key itself)."""
    created = admin(priced, "POST", "/v1/admin/keys", json={"email": email})
    assert created.status_code == 201, created.text
    return created.json()["id"], created.json()["key"]


def set_budget(priced: Priced, **body: Any) -> dict[str, Any]:
    response = admin(priced, "POST", "/v1/admin/budgets", json=body)
    assert response.status_code == 201, response.text
    return response.json()


def budget_view(priced: Priced, budget_id: str) -> dict[str, Any]:
    listed = admin(priced, "GET", "/v1/admin/budgets")
    assert listed.status_code == 200, listed.text
    return next(view for view in listed.json()["data"] if view["id"] == budget_id)


def wait_spent(priced: Priced, budget_id: str, requests: int) -> float:
    """Wait until the budget shows the cost of `requests` requests; returns what it shows."""
    target = requests * priced.cost - 1e-9
    return wait_until(
        lambda: (spent := budget_view(priced, budget_id)["spent_usd"]) >= target and spent,
        timeout=30,
        what=f"{requests} requests' spending on {budget_id}",
    )


def written_spent(priced: Priced, scope: str, subject_id: str) -> float:
    """What the server's database holds for the subject this month (the ledger's writes)."""
    url = (
        priced.server.database_url or f"sqlite+aiosqlite:///{priced.server.home / SQLITE_FILE_NAME}"
    )

    async def read() -> float:
        database = Database(url)
        try:
            subject = {"owner": subject_id} if scope == "user" else {"key_id": subject_id}
            return await UsageStore(database).spent(period_start("month", time.time()), **subject)
        finally:
            await database.close()

    return run_in_thread(read)


def ask(priced: Priced, headers: dict[str, str], path: str = "/v1/chat/completions"):
    return priced.http.post(path, json=QUESTION, headers=headers)


def alerts_of(priced: Priced, budget_id: str) -> list[dict[str, Any]]:
    listed = admin(priced, "GET", "/v1/admin/alerts", params={"limit": 1000})
    assert listed.status_code == 200, listed.text
    return sorted(
        (alert for alert in listed.json()["data"] if alert["budget_id"] == budget_id),
        key=lambda alert: alert["threshold"],
    )


def assert_budget_exceeded(response: httpx.Response, period: str) -> dict[str, Any]:
    error = assert_error_envelope(
        response, 429, type="insufficient_quota", param=None, code="budget_exceeded"
    )
    assert "budget" in error["message"] and period in error["message"], error
    return error


# -- alerts ------------------------------------------------------------------------------------


def test_alerts_at_50_80_100_percent_reach_the_webhook_once_each_then_429(priced: Priced):
    email = new_user(priced)
    _, key = new_key(priced, email)
    # 9.5 requests' worth: 50 % is crossed by the 5th request, 80 % by the 8th, 100 % by the 10th.
    budget = set_budget(priced, user=email, amount_usd=9.5 * priced.cost, period="month")
    assert budget["spent_usd"] == 0 and budget["soft"] is False and budget["scope"] == "user"
    for sent in range(1, 11):
        assert ask(priced, bearer(key)).status_code == 200, sent
        wait_spent(priced, budget["id"], sent)

    refused = ask(priced, bearer(key))
    error = assert_budget_exceeded(refused, "month")
    assert email in error["message"] and budget["id"] in error["message"], error
    retry_after = int(refused.headers["retry-after"])
    assert abs(retry_after - (budget["resets_at"] - time.time())) < 60, retry_after

    alerts = wait_until(
        lambda: (
            (found := alerts_of(priced, budget["id"]))
            and all(a["delivered"] for a in found)
            and len(found) == 3
            and found
        ),
        what="three delivered alerts",
    )
    assert [alert["threshold"] for alert in alerts] == [50, 80, 100]
    for alert in alerts:
        assert alert["spent_usd"] >= alert["threshold"] / 100 * budget["amount_usd"] - 1e-9
        assert alert["period"] == "month" and alert["period_start"] == budget["period_start"]
    received = priced.listener.of(budget["id"])
    assert sorted(body["threshold"] for body in received) == [50, 80, 100], received
    assert {body["id"] for body in received} == {alert["id"] for alert in alerts}
    assert all(body["object"] == "budget.alert" and body["soft"] is False for body in received)

    log_lines = [
        line
        for line in priced.server.log_lines()
        if line.get("message") == "budget alert" and line.get("budget_id") == budget["id"]
    ]
    assert sorted(line["threshold"] for line in log_lines) == [50, 80, 100], log_lines
    assert all(line["subject"] == budget["subject_id"] for line in log_lines)
    assert all(line["period"] == "month" for line in log_lines)


def test_the_webhook_is_retried_when_it_first_answers_500(priced: Priced):
    email = new_user(priced)
    key_id, key = new_key(priced, email)
    budget = set_budget(priced, key=key_id, amount_usd=1.5 * priced.cost, period="day")
    priced.listener.fail_first[budget["id"]] = 1
    assert ask(priced, bearer(key)).status_code == 200  # 67 %: the 50 % alert

    alert = wait_until(
        lambda: (found := alerts_of(priced, budget["id"])) and found[0]["delivered"] and found[0],
        what="the 50 % alert, delivered",
    )
    assert alert["threshold"] == 50
    attempts = priced.listener.of(budget["id"])
    assert [body["threshold"] for body in attempts] == [50, 50], attempts
    assert attempts[0] == attempts[1]  # the same alert, sent again
    retried = [
        line
        for line in priced.server.log_lines()
        if line.get("message") == "budget alert webhook failed; retrying"
        and line.get("alert_id") == alert["id"]
    ]
    assert len(retried) == 1 and retried[0]["error"] == "HTTP 500", retried


def test_a_soft_budget_only_alerts(priced: Priced):
    email = new_user(priced)
    _, key = new_key(priced, email)
    budget = set_budget(priced, user=email, amount_usd=1.5 * priced.cost, soft=True)
    assert budget["soft"] is True and budget["period"] == "month"  # the default period
    for sent in range(1, 4):  # up to 200 %: never refused
        assert ask(priced, bearer(key)).status_code == 200, sent
        wait_spent(priced, budget["id"], sent)
    # Once the last request is in the database, its batch has been looked at too: the
    # thresholds it passes again are not raised again.
    wait_until(
        lambda: written_spent(priced, "user", budget["subject_id"]) >= 3 * priced.cost - 1e-9,
        what="the three requests in the database",
    )
    alerts = wait_until(
        lambda: (
            (found := alerts_of(priced, budget["id"]))
            and all(a["delivered"] for a in found)
            and len(found) == 3
            and found
        ),
        what="the soft budget's three alerts, delivered",
    )
    assert [alert["threshold"] for alert in alerts] == [50, 80, 100]
    received = priced.listener.of(budget["id"])
    assert sorted(body["threshold"] for body in received) == [50, 80, 100], received
    assert all(body["soft"] is True for body in received)


# -- refusals ----------------------------------------------------------------------------------


def test_every_model_route_refuses_a_spent_budget(priced: Priced):
    email = new_user(priced)
    _, key = new_key(priced, email)
    budget = set_budget(priced, user=email, amount_usd=0.5 * priced.cost, period="total")
    assert budget["resets_at"] is None
    assert ask(priced, bearer(key)).status_code == 200
    wait_spent(priced, budget["id"], 1)

    refused = ask(priced, bearer(key))
    error = assert_budget_exceeded(refused, "total")
    assert "retry-after" not in refused.headers  # a total budget never resets
    assert "does not reset" in error["message"]
    streamed = priced.http.post(
        "/v1/chat/completions", json={**QUESTION, "stream": True}, headers=bearer(key)
    )
    assert_budget_exceeded(streamed, "total")
    response = {"model": MODEL, "input": "Say hi.", "max_output_tokens": 16}
    assert_budget_exceeded(
        priced.http.post("/v1/responses", json=response, headers=bearer(key)), "total"
    )
    background = {**response, "background": True}
    assert_budget_exceeded(
        priced.http.post("/v1/responses", json=background, headers=bearer(key)), "total"
    )
    seed = priced.http.post("/api/ai/chat/completions", json=QUESTION, headers=bearer(key))
    assert seed.status_code == 429, seed.text
    assert seed.json()["success"] is False, seed.text  # the seed's own error shape
    # Basic auth is the same user: the same budget.
    assert ask(priced, basic_auth(email, PASSWORD)).status_code == 429
    # Not a model route: still served.
    assert priced.http.get("/v1/models", headers=bearer(key)).status_code == 200

    # Deleting the budget lifts the limit at once (this process).
    deleted = admin(priced, "DELETE", f"/v1/admin/budgets/{budget['id']}")
    assert deleted.json() == {"object": "budget.deleted", "id": budget["id"], "deleted": True}
    assert ask(priced, bearer(key)).status_code == 200


def test_a_key_budget_limits_only_that_key_and_a_user_budget_all_of_them(priced: Priced):
    email = new_user(priced)
    limited_id, limited = new_key(priced, email)
    _, other = new_key(priced, email)
    key_budget = set_budget(priced, key=limited_id, amount_usd=1.5 * priced.cost, period="day")
    for sent in (1, 2):
        assert ask(priced, bearer(limited)).status_code == 200
        wait_spent(priced, key_budget["id"], sent)
    error = assert_budget_exceeded(ask(priced, bearer(limited)), "day")
    assert limited_id in error["message"]
    assert ask(priced, bearer(other)).status_code == 200  # the user has no budget of their own

    # The user's budget counts every key's spending: 3 requests so far.
    user_budget = set_budget(priced, user=email, amount_usd=3.5 * priced.cost, period="day")
    assert user_budget["spent_usd"] == pytest.approx(3 * priced.cost)
    assert ask(priced, bearer(other)).status_code == 200
    wait_spent(priced, user_budget["id"], 4)
    assert_budget_exceeded(ask(priced, bearer(other)), "day")
    assert_budget_exceeded(ask(priced, basic_auth(email, PASSWORD)), "day")
    # A master key has no budget.
    assert ask(priced, bearer(MASTER_KEY)).status_code == 200


def test_concurrent_requests_overshoot_by_at_most_those_in_flight(priced: Priced):
    email = new_user(priced)
    _, key = new_key(priced, email)
    budget = set_budget(priced, user=email, amount_usd=5.5 * priced.cost, period="day")
    workers, affordable = 4, 6  # 6 requests reach 5.5 requests' worth

    def spend_until_refused() -> int:
        served = 0
        with httpx.Client(base_url=priced.server.base_url, timeout=120) as http:
            for _ in range(30):
                response = http.post("/v1/chat/completions", json=QUESTION, headers=bearer(key))
                if response.status_code == 429:
                    return served
                assert response.status_code == 200, response.text
                served += 1
        raise AssertionError("never refused")

    with ThreadPoolExecutor(workers) as pool:
        served = sum(pool.map(lambda _: spend_until_refused(), range(workers)))

    # Each worker has at most one request in flight when the budget is reached: the other
    # workers' (and, for a moment after its answer, the finishing one's) may still be served.
    assert affordable <= served <= affordable + workers, served
    spent = wait_spent(priced, budget["id"], served)
    assert spent == pytest.approx(served * priced.cost)
    assert spent <= budget["amount_usd"] + workers * priced.cost
    assert_budget_exceeded(ask(priced, bearer(key)), "day")


# -- the admin API -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"amount_usd": 5}, "user"),  # neither user nor key
        ({"user": "x@example.com", "key": "key_x", "amount_usd": 5}, "user"),  # both
        ({"user": "{email}", "amount_usd": 0}, "amount_usd"),
        ({"user": "{email}", "amount_usd": -1}, "amount_usd"),
        ({"user": "{email}", "amount_usd": "lots"}, "amount_usd"),
        ({"user": "{email}", "amount_usd": 5, "period": "week"}, "period"),
        ({"user": "{email}", "amount_usd": 5, "limit": 3}, "limit"),
    ],
)
def test_invalid_budgets_are_400_with_the_param(priced: Priced, body: dict, param: str):
    email = new_user(priced)
    body = {
        name: value.format(email=email) if isinstance(value, str) else value
        for name, value in body.items()
    }
    response = admin(priced, "POST", "/v1/admin/budgets", json=body)
    assert_error_envelope(response, 400, param=param)


def test_the_admin_api_sets_replaces_lists_and_deletes_budgets(priced: Priced):
    email = new_user(priced)
    key_id, key = new_key(priced, email)
    unknown = admin(
        priced, "POST", "/v1/admin/budgets", json={"user": "nobody@example.com", "amount_usd": 1}
    )
    assert_error_envelope(unknown, 404, param="user")
    assert_error_envelope(
        admin(priced, "POST", "/v1/admin/budgets", json={"key": "key_nope", "amount_usd": 1}),
        404,
        param="key",
    )

    first = set_budget(priced, user=email, amount_usd=5, period="day")
    user_id = first["subject_id"]
    assert user_id.startswith("user_")
    by_id = set_budget(priced, user=user_id, amount_usd=7.25, period="month")  # replaces it
    assert by_id["id"] != first["id"] and by_id["amount_usd"] == 7.25
    key_budget = set_budget(priced, key=key_id, amount_usd=2)
    listed = admin(priced, "GET", "/v1/admin/budgets").json()
    assert listed["object"] == "list"
    mine = [view for view in listed["data"] if view["subject_id"] in (user_id, key_id)]
    assert {view["id"] for view in mine} == {by_id["id"], key_budget["id"]}
    view = next(view for view in mine if view["id"] == by_id["id"])
    assert set(view) == {
        "object",
        "id",
        "scope",
        "subject_id",
        "amount_usd",
        "period",
        "soft",
        "created_at",
        "spent_usd",
        "period_start",
        "resets_at",
    }
    assert view["resets_at"] > time.time() > view["period_start"]

    assert admin(priced, "DELETE", f"/v1/admin/budgets/{by_id['id']}").status_code == 200
    assert_error_envelope(admin(priced, "DELETE", f"/v1/admin/budgets/{by_id['id']}"), 404)
    remaining = [view["id"] for view in admin(priced, "GET", "/v1/admin/budgets").json()["data"]]
    assert by_id["id"] not in remaining and key_budget["id"] in remaining

    # Not for non-admins: the same 404 as an unknown URL.
    for method, path in [
        ("GET", "/v1/admin/budgets"),
        ("POST", "/v1/admin/budgets"),
        ("DELETE", f"/v1/admin/budgets/{key_budget['id']}"),
        ("GET", "/v1/admin/alerts"),
    ]:
        refused = priced.http.request(method, path, headers=bearer(key), json={})
        error = assert_error_envelope(refused, 404)
        assert error["message"] == f"Unknown request URL: {method} {path}"


# -- the CLI against a running server ----------------------------------------------------------


def test_budgets_set_by_the_cli_reach_a_running_server(priced: Priced):
    email = new_user(priced)
    created = server_cli(
        priced.server,
        "keys",
        "create",
        email,
        "--budget",
        str(1.5 * priced.cost),
        "--budget-period",
        "day",
    )
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip()
    assert key.startswith("sk-"), created.stdout
    budget_id = re.search(r"budget_[0-9a-f]{24}", created.stderr).group()
    # Another process made the budget: the server sees it at its next reload (every 0.5 s),
    # and refuses the key from then on (its requests so far spent more than 1.5 requests).
    wait_until(
        lambda: ask(priced, bearer(key)).status_code == 429,
        timeout=15,
        what="the server to enforce the CLI's budget",
    )
    listed = server_cli(priced.server, "budgets", "list")
    assert listed.returncode == 0, listed.stderr
    line = next(line for line in listed.stdout.splitlines() if budget_id in line)
    assert "key" in line and "day" in line, line

    wait_until(lambda: alerts_of(priced, budget_id), what="the CLI budget's alerts")
    alerts = server_cli(priced.server, "alerts", "list", "--limit", "1000")
    assert alerts.returncode == 0 and budget_id in alerts.stdout, alerts.stdout

    deleted = server_cli(priced.server, "budgets", "delete", budget_id)
    assert deleted.returncode == 0 and budget_id in deleted.stdout
    wait_until(
        lambda: ask(priced, bearer(key)).status_code == 200,
        timeout=15,
        what="the server to see the deletion",
    )
