"""A budget made by another process (the CLI) binds a key from its first request, not from the
server's next reload of the budget list (budget_refresh_s, here far longer than the test): the
key lookup brings the ids of the key's and its user's budgets along, and an unknown one makes
the server read the list at once."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from support import (
    MASTER_KEY,
    PostgresDatabases,
    RunningServer,
    admin_add_user,
    bearer,
    new_email,
    server_cli,
    start_server,
    stop_server,
)

MODEL = "smollm2-135m-instruct"
PRICE_PER_TOKEN = 0.001
QUESTION = {"model": MODEL, "messages": [{"role": "user", "content": "Say hi."}], "max_tokens": 1}


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def server(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    postgres_databases: PostgresDatabases,
) -> Iterator[RunningServer]:
    home: Path = tmp_path_factory.mktemp(f"budget-first-{request.param}")
    (home / "config.toml").write_text(
        f'[[models]]\nname = "{MODEL}"\nprice_input_per_1m = {PRICE_PER_TOKEN * 1e6}\n'
        "price_output_per_1m = 0\n",
        encoding="utf-8",
    )
    env: dict[str, str | None] = {
        "DATABASE_URL": None,
        "AISERVICE_DATABASE_URL": None,
        "AISERVICE_BUDGET_REFRESH_S": "300",
    }
    if request.param == "postgres":
        env["DATABASE_URL"] = postgres_databases.create()
    running = start_server(home, env=env)
    # The budget list is read by this first request, long before the CLI's budget exists.
    first = httpx.post(
        f"{running.api_url}/chat/completions",
        json=QUESTION,
        headers=bearer(MASTER_KEY),
        timeout=120,
    )
    assert first.status_code == 200, first.text
    yield running
    stop_server(running)


def test_a_key_made_with_a_budget_by_the_cli_is_held_to_it_from_its_first_request(
    server: RunningServer,
) -> None:
    email = new_email("first-budget")
    admin_add_user(server, email, "budget-password")
    # Less than one request's cost: the first request is let through (nothing spent yet),
    # the second is over the budget.
    created = server_cli(server, "keys", "create", email, "--budget", "0.000001")
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip()
    with httpx.Client(base_url=server.api_url, headers=bearer(key), timeout=120) as client:
        assert client.post("/chat/completions", json=QUESTION).status_code == 200
        refused = client.post("/chat/completions", json=QUESTION)
    assert refused.status_code == 429, refused.text
    assert refused.json()["error"]["code"] == "budget_exceeded"
