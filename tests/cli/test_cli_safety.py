"""`aiservice keys create --moderation/--pii`, `aiservice keys safety` and `aiservice users
safety`, and the safety column of the listings, on a SQLite home and on a fresh PostgreSQL
database (no server: the commands work on the database)."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from support import PostgresDatabases, run_cli

KEY_ID = re.compile(r"\bkey_[0-9a-f]{24}\b")
PASSWORD = "cli-Password-0451"
Cli = Callable[..., subprocess.CompletedProcess]


@pytest.fixture(params=["sqlite", "postgres"])
def cli(
    request: pytest.FixtureRequest, tmp_path: Path, postgres_databases: PostgresDatabases
) -> Cli:
    env = {"DATABASE_URL": postgres_databases.create()} if request.param == "postgres" else None

    def run(*args: str) -> subprocess.CompletedProcess:
        return run_cli(*args, home=tmp_path, env=env)

    return run


def ok(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    return result.stdout


def cells(listing: str, needle: str) -> list[str]:
    row = next(line for line in listing.splitlines() if needle in line)
    return [cell.strip() for cell in row.split("│")[1:-1]]


def create_key(cli: Cli, email: str, *options: str) -> str:
    created = cli("keys", "create", email, *options)
    ok(created)
    found = KEY_ID.search(created.stderr)
    assert found, created.stderr
    return found.group()


def test_keys_create_stores_the_policy_and_the_listing_shows_it(cli: Cli) -> None:
    ok(cli("users", "add", "ann@example.com", "--password", PASSWORD))
    strict = create_key(cli, "ann@example.com", "--moderation", "block", "--pii", "redact")
    plain = create_key(cli, "ann@example.com", "--name", "plain")

    assert ok(cli("keys", "safety", strict)).strip() == f"{strict}: moderation=block, pii=redact"
    assert ok(cli("keys", "safety", plain)).strip() == f"{plain}: defaults"
    listing = ok(cli("keys", "list"))
    assert cells(listing, strict)[-1] == "moderation=block, pii=redact"
    assert cells(listing, plain)[-1] == "defaults"
    assert cells(listing, strict)[-2] == "defaults"  # its rate limits are untouched


def test_keys_safety_replaces_and_clears_a_keys_policy(cli: Cli) -> None:
    ok(cli("users", "add", "bob@example.com", "--password", PASSWORD))
    key_id = create_key(cli, "bob@example.com", "--pii", "flag", "--rpm", "5")
    assert ok(cli("keys", "safety", key_id, "--moderation", "score")).strip() == (
        f"{key_id}: moderation=score"  # replaces its earlier own values
    )
    assert ok(cli("keys", "safety", key_id)).strip() == f"{key_id}: moderation=score"
    assert ok(cli("keys", "limits", key_id)).strip() == f"{key_id}: rpm=5"
    assert ok(cli("keys", "safety", key_id, "--clear")).strip() == f"{key_id}: defaults"
    assert cells(ok(cli("keys", "list")), key_id)[-1] == "defaults"


def test_users_safety_sets_shows_and_clears_a_users_policy(cli: Cli) -> None:
    ok(cli("users", "add", "cat@example.com", "--password", PASSWORD))
    ok(cli("users", "add", "dan@example.com", "--password", PASSWORD))
    set_ = ok(cli("users", "safety", "CAT@example.com", "--moderation", "block", "--pii", "flag"))
    assert set_.strip() == "cat@example.com: moderation=block, pii=flag"
    assert ok(cli("users", "safety", "cat@example.com")).strip() == (
        "cat@example.com: moderation=block, pii=flag"
    )
    listing = ok(cli("users", "list"))
    assert cells(listing, "cat@example.com")[-1] == "moderation=block, pii=flag"
    assert cells(listing, "dan@example.com")[-1] == "defaults"
    assert ok(cli("users", "safety", "cat@example.com", "--clear")).strip() == (
        "cat@example.com: defaults"
    )
    assert cells(ok(cli("users", "list")), "cat@example.com")[-1] == "defaults"


@pytest.mark.parametrize(("option", "value"), [("--moderation", "strict"), ("--pii", "mask")])
def test_a_bad_value_is_refused_before_anything_is_stored(
    cli: Cli, option: str, value: str
) -> None:
    ok(cli("users", "add", "eve@example.com", "--password", PASSWORD))
    key_id = create_key(cli, "eve@example.com", "--pii", "flag")
    for args in (
        ("keys", "create", "eve@example.com", option, value),
        ("keys", "safety", key_id, option, value),
        ("users", "safety", "eve@example.com", option, value),
    ):
        refused = cli(*args)
        assert refused.returncode == 2, refused.stdout + refused.stderr
        assert option in refused.stderr and "Traceback" not in refused.stderr
    assert len(KEY_ID.findall(ok(cli("keys", "list")))) == 1  # no key was made
    assert ok(cli("keys", "safety", key_id)).strip() == f"{key_id}: pii=flag"
    assert ok(cli("users", "safety", "eve@example.com")).strip() == "eve@example.com: defaults"


def test_an_unknown_key_or_user_exits_1_naming_it(cli: Cli) -> None:
    for args, message in (
        (("keys", "safety", "key_nope", "--pii", "flag"), "No key key_nope."),
        (("keys", "safety", "key_nope"), "No key key_nope."),
        (("users", "safety", "ghost@example.com", "--clear"), "No user ghost@example.com."),
    ):
        result = cli(*args)
        assert result.returncode == 1, result.stdout + result.stderr
        assert message in result.stderr and "Traceback" not in result.stderr
