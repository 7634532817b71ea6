"""`aiservice usage`: the usage ledger's totals as a table with a totals row, on both storage
backends. The records are put in the table directly, so every number is known."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from aiservice.store.database import Database
from aiservice.store.migrate import upgrade_database
from aiservice.store.usage import UsageStore
from support import PostgresDatabases, run_cli, run_in_thread

NOW = time.time()
DAY = 86400


def record(**fields: Any) -> dict[str, Any]:
    created_at = fields.pop("created_at", NOW - 60)
    row = {
        "created_at": created_at,
        "day": time.strftime("%Y-%m-%d", time.gmtime(created_at)),
        "request_id": "req_test",
        "owner": "user_alice",
        "key_id": "key_alice",
        "route": "/v1/chat/completions",
        "background": False,
        "model_requested": "gpt-4o-mini",
        "model_served": "smollm2-135m-instruct",
        "provider": "local",
        "input_tokens": 10,
        "output_tokens": 5,
        "cached_tokens": None,
        "cost_usd": 0.25,
        "latency_ms": 12.0,
        "ttft_ms": 3.0,
        "status_code": 200,
        "error_code": None,
        "upstream_attempts": 0,
        "metadata": {},
    }
    return row | fields


RECORDS = [
    record(metadata={"feature": "auto_reply"}),
    record(metadata={"feature": "auto_reply"}, input_tokens=20, output_tokens=10, cost_usd=0.5),
    record(metadata={"feature": "summary"}, model_served="gpt-4o", provider="openai", cost_usd=1),
    record(
        owner="user_bob",
        key_id="key_bob",
        model_served=None,
        provider=None,
        input_tokens=0,
        output_tokens=0,
        cost_usd=0.0,
        status_code=404,
        error_code="model_not_found",
    ),
    record(created_at=NOW - 10 * DAY, owner="user_bob", key_id="key_bob", cost_usd=2.0),
]


@pytest.fixture(params=["sqlite", "postgres"])
def cli_env(
    request: pytest.FixtureRequest, tmp_path: Path, postgres_databases: PostgresDatabases
) -> Iterator[dict[str, str]]:
    """The environment of a home whose database holds RECORDS."""
    env = {"DATABASE_URL": postgres_databases.create()} if request.param == "postgres" else {}
    url = env.get("DATABASE_URL") or f"sqlite+aiosqlite:///{tmp_path / 'aiservice.db'}"
    upgrade_database(url)

    async def insert() -> None:
        database = Database(url)
        try:
            await UsageStore(database).insert_many(RECORDS)
        finally:
            await database.close()

    run_in_thread(insert)
    yield env


def usage_table(tmp_path: Path, env: dict[str, str], *args: str) -> list[list[str]]:
    """The table's rows (header first, totals last), each as its cells' text."""
    result = run_cli("usage", *args, home=tmp_path, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    return [
        [cell.strip() for cell in line.strip().strip("│┃").split("│" if "│" in line else "┃")]
        for line in result.stdout.splitlines()
        if "│" in line or "┃" in line
    ]


HEADER = ["requests", "input", "output", "total", "cost (USD)", "errors"]


def test_usage_by_model_lists_each_model_and_the_totals(tmp_path, cli_env):
    rows = usage_table(tmp_path, cli_env, "--by", "model")
    assert rows[0] == ["model", *HEADER]
    assert sorted(rows[1:-1]) == sorted(
        [
            ["(none)", "1", "0", "0", "0", "0.000000", "1"],
            ["gpt-4o", "1", "10", "5", "15", "1.000000", "0"],
            ["smollm2-135m-instruct", "3", "40", "20", "60", "2.750000", "0"],
        ]
    )
    assert rows[-1] == ["total", "5", "50", "25", "75", "3.750000", "1"]


def test_usage_since_a_span_and_by_a_metadata_key_of_one_user(tmp_path, cli_env):
    rows = usage_table(tmp_path, cli_env, "--since", "7d", "--by", "metadata.feature")
    assert rows[0] == ["metadata.feature", *HEADER]
    assert rows[-1] == ["total", "4", "40", "20", "60", "1.750000", "1"]
    rows = usage_table(
        tmp_path, cli_env, "--since", "7d", "--by", "metadata.feature", "--user", "user_alice"
    )
    assert sorted(rows[1:-1]) == [
        ["auto_reply", "2", "30", "15", "45", "0.750000", "0"],
        ["summary", "1", "10", "5", "15", "1.000000", "0"],
    ]
    assert rows[-1] == ["total", "3", "40", "20", "60", "1.750000", "0"]


def test_usage_without_grouping_is_one_totals_row(tmp_path, cli_env):
    assert usage_table(tmp_path, cli_env) == [HEADER, ["5", "50", "25", "75", "3.750000", "1"]]
    until = time.strftime("%Y-%m-%d", time.gmtime(NOW - 5 * DAY))
    assert usage_table(tmp_path, cli_env, "--until", until, "--by", "user,key") == [
        ["user", "key", *HEADER],
        ["user_bob", "key_bob", "1", "10", "5", "15", "2.000000", "0"],
        ["total", "", "1", "10", "5", "15", "2.000000", "0"],
    ]


def test_usage_of_a_user_by_email(tmp_path, cli_env):
    added = run_cli(
        "users", "add", "carol@example.com", "--password", "password-1234",
        home=tmp_path, env=cli_env,
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    # Carol has made no request: nothing but a totals row of zeros.
    rows = usage_table(tmp_path, cli_env, "--user", "carol@example.com", "--by", "day")
    assert rows == [["day", *HEADER], ["total", "0", "0", "0", "0", "0.000000", "0"]]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--since", "last week"], "'--since'"),
        (["--until", "2026-02-30"], "'--until'"),
        (["--by", "colour"], "'--by'"),
        (["--user", "nobody@example.com"], "No user nobody@example.com"),
    ],
)
def test_bad_options_are_refused_with_a_message(tmp_path, cli_env, args, message):
    result = run_cli("usage", *args, home=tmp_path, env=cli_env)
    assert result.returncode != 0
    assert message in result.stderr
    assert "Traceback" not in result.stdout + result.stderr
