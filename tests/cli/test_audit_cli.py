"""`aiservice audit`, and the CLI's own changes in the audit log: every change made with
`users`, `keys`, `limits` and `budgets` is one row by `cli:<os user>` (reads are none), listed
newest first as a table or, with --json, as GET /v1/admin/audit's list object, with filters and
--after pages; on a SQLite home and on a fresh PostgreSQL database."""

from __future__ import annotations

import getpass
import json
import re
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from support import PostgresDatabases, run_cli

PASSWORD = "a-long-enough-password"
KEY_ID = re.compile(r"key_[0-9a-f]{24}")
BUDGET_ID = re.compile(r"budget_[0-9a-f]{24}")
USER_ID = re.compile(r"user_[0-9a-f]{24}")
ACTOR = f"cli:{getpass.getuser()}"
Cli = Callable[..., subprocess.CompletedProcess]


@pytest.fixture(params=["sqlite", "postgres"])
def cli(
    request: pytest.FixtureRequest, tmp_path: Path, postgres_databases: PostgresDatabases
) -> Cli:
    env = {"DATABASE_URL": postgres_databases.create()} if request.param == "postgres" else None

    def run(*args: str) -> subprocess.CompletedProcess:
        result = run_cli(*args, home=tmp_path, env=env)
        assert result.returncode == 0, result.stdout + result.stderr
        return result

    return run


def audit_json(cli: Cli, *args: str) -> dict:
    return json.loads(cli("audit", "--json", *args).stdout)


def test_cli_changes_are_audited_as_the_os_user(cli: Cli) -> None:
    user_id = USER_ID.search(cli("users", "add", "ann@example.com", "--password", PASSWORD).stdout)
    assert user_id is not None
    created = cli("keys", "create", "ann@example.com", "--budget", "3")
    key_id = KEY_ID.search(created.stderr)
    budget_id = BUDGET_ID.search(created.stderr)
    assert key_id is not None and budget_id is not None
    secret = created.stdout.strip()
    cli("keys", "limits", key_id[0], "--rpm", "4")
    cli("keys", "safety", key_id[0], "--pii", "redact")
    cli("users", "limits", "ann@example.com", "--tpd", "1000")
    cli("users", "safety", "ann@example.com", "--moderation", "block")
    # Reads: none of these is audited.
    for read in (["users", "list"], ["keys", "list"], ["budgets", "list"]):
        cli(*read)
    cli("keys", "limits", key_id[0])
    cli("users", "safety", "ann@example.com")
    cli("budgets", "delete", budget_id[0])
    cli("keys", "revoke", key_id[0])
    cli("users", "disable", "ann@example.com")
    page = audit_json(cli, "--limit", "100")
    rows = list(reversed(page["data"]))
    assert [(row["action"], row["target"]) for row in rows] == [
        ("user.create", user_id[0]),
        ("key.create", key_id[0]),
        ("budget.set", budget_id[0]),
        ("key.rate_limits", key_id[0]),
        ("key.safety", key_id[0]),
        ("user.rate_limits", user_id[0]),
        ("user.safety", user_id[0]),
        ("budget.delete", budget_id[0]),
        ("key.revoke", key_id[0]),
        ("user.disable", user_id[0]),
    ]
    assert {row["actor"] for row in rows} == {ACTOR}
    assert {row["request_id"] for row in rows} == {None}  # no request: the CLI's own doing
    assert secret not in json.dumps(page) and PASSWORD not in json.dumps(page)
    assert page["object"] == "list" and page["has_more"] is False
    assert page["last_id"] == page["data"][-1]["id"]


def test_the_list_filters_pages_and_prints_a_table(cli: Cli) -> None:
    cli("users", "add", "bob@example.com", "--password", PASSWORD)
    keys = [KEY_ID.search(cli("keys", "create", "bob@example.com").stderr)[0] for _ in range(3)]
    first = audit_json(cli, "--action", "key.create", "--limit", "2")
    assert [row["target"] for row in first["data"]] == [keys[2], keys[1]]
    assert first["has_more"] is True
    rest = audit_json(cli, "--action", "key.create", "--limit", "2", "--after", first["last_id"])
    assert [row["target"] for row in rest["data"]] == [keys[0]] and rest["has_more"] is False
    assert [row["target"] for row in audit_json(cli, "--target", keys[1])["data"]] == [keys[1]]
    assert audit_json(cli, "--actor", "admin")["data"] == []
    assert audit_json(cli, "--since", "4000000000")["data"] == []
    table = cli("audit", "--limit", "2").stdout
    assert keys[2] in table and keys[1] in table and keys[0] not in table
    assert ACTOR in table and "key.create" in table
    assert f"--after {first['last_id']}" in table  # how to get the next page


def test_an_unknown_cursor_fails_cleanly(tmp_path: Path) -> None:
    result = run_cli("audit", "--after", "audit_unknown", home=tmp_path)
    assert result.returncode == 1 and "audit_unknown" in result.stderr
    assert "Traceback" not in result.stderr
