"""`aiservice budgets set|list|delete`, `aiservice alerts list` and `keys create --budget`, on a
SQLite home and on a fresh PostgreSQL database (no server: the commands work on the database).
Enforcement of what they set, by a running server, is in tests/api/test_budgets.py."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from support import PostgresDatabases, run_cli

BUDGET_ID = re.compile(r"budget_[0-9a-f]{24}")
Cli = Callable[..., subprocess.CompletedProcess]


@pytest.fixture(params=["sqlite", "postgres"])
def cli(
    request: pytest.FixtureRequest, tmp_path: Path, postgres_databases: PostgresDatabases
) -> Cli:
    env = {"DATABASE_URL": postgres_databases.create()} if request.param == "postgres" else None

    def run(*args: str) -> subprocess.CompletedProcess:
        return run_cli(*args, home=tmp_path, env=env)

    return run


def ok(result: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def row_of(listing: str, budget_id: str) -> str:
    return next(line for line in listing.splitlines() if budget_id in line)


def test_budgets_set_list_replace_and_delete(cli: Cli) -> None:
    ok(cli("users", "add", "ann@example.com", "--password", "password123"))
    set_user = ok(cli("budgets", "set", "--user", "ann@example.com", "--amount", "5.00"))
    user_budget = BUDGET_ID.search(set_user.stdout).group()
    assert "month budget of $5.00 for user user_" in set_user.stdout

    created = ok(
        cli("keys", "create", "ann@example.com", "--budget", "0.25", "--budget-period", "day")
    )
    key = created.stdout.strip()
    assert key.startswith("sk-") and "\n" not in key  # stdout is the key alone, for scripts
    key_id = re.search(r"key_[0-9a-f]{24}", created.stderr).group()
    key_budget = BUDGET_ID.search(created.stderr).group()
    assert f"day budget of $0.25 for key {key_id}" in created.stderr

    listing = ok(cli("budgets", "list")).stdout
    assert "$5.00" in row_of(listing, user_budget) and "month" in row_of(listing, user_budget)
    key_row = row_of(listing, key_budget)
    assert key_id in key_row and "$0.25" in key_row and "day" in key_row and "$0.00" in key_row

    # One budget per subject: setting again replaces it.
    replaced = ok(
        cli("budgets", "set", "--key", key_id, "--amount", "1", "--period", "total", "--soft")
    )
    assert "soft total budget of $1.00" in replaced.stdout
    listing = ok(cli("budgets", "list")).stdout
    assert key_budget not in listing
    assert "never" in row_of(listing, BUDGET_ID.search(replaced.stdout).group())

    ok(cli("budgets", "delete", user_budget))
    assert user_budget not in ok(cli("budgets", "list")).stdout
    again = cli("budgets", "delete", user_budget)
    assert again.returncode == 1 and f"No budget {user_budget}." in again.stderr


def test_budget_errors_exit_with_a_message(cli: Cli) -> None:
    ok(cli("users", "add", "bob@example.com", "--password", "password123"))
    unknown = cli("budgets", "set", "--user", "nobody@example.com", "--amount", "1")
    assert unknown.returncode == 1 and "No user nobody@example.com." in unknown.stderr
    neither = cli("budgets", "set", "--amount", "1")
    assert neither.returncode == 1 and "Give either" in neither.stderr
    zero = cli("budgets", "set", "--user", "bob@example.com", "--amount", "0")
    assert zero.returncode == 1 and "positive" in zero.stderr
    week = cli("budgets", "set", "--user", "bob@example.com", "--amount", "1", "--period", "week")
    assert week.returncode == 2 and "day, month, total" in week.stderr
    # A bad budget is refused before the key is made.
    bad = cli("keys", "create", "bob@example.com", "--budget", "1", "--budget-period", "week")
    assert bad.returncode == 2 and "--budget-period" in bad.stderr
    negative = cli("keys", "create", "bob@example.com", "--budget", "-1")
    assert negative.returncode == 2 and "--budget" in negative.stderr
    assert "key_" not in ok(cli("keys", "list")).stdout


def test_alerts_list_starts_empty(cli: Cli) -> None:
    listing = ok(cli("alerts", "list"))
    assert "threshold" in listing.stdout and "alert_" not in listing.stdout
