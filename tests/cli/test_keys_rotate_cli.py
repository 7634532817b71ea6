"""`aiservice keys create --expires/--zero-retention`, `keys rotate`, `keys zero-retention`,
`users add --zero-retention` and `users zero-retention`, and their columns in the listings, on
a SQLite home and on a fresh PostgreSQL database (no server: the commands work on the
database)."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from support import PostgresDatabases, run_cli

KEY_ID = re.compile(r"\bkey_[0-9a-f]{24}\b")
SECRET = re.compile(r"sk-[A-Za-z0-9_-]{43}")
PASSWORD = "cli-Password-0451"
Cli = Callable[..., subprocess.CompletedProcess]
# keys list: id, user, name, key, created, revoked, expires, zero retention, rate limits, safety
REVOKED, EXPIRES, ZERO_RETENTION = 5, 6, 7


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
    assert "Traceback" not in result.stdout + result.stderr
    return result


def cells(listing: str, first: str) -> list[str]:
    """The cells of the row whose first cell (a key id, a user id) or second (an e-mail) is
    `first`: a rotated key's row also names its successor."""
    for line in listing.splitlines():
        row = [cell.strip() for cell in line.split("│")[1:-1]]
        if row and first in row[:2]:
            return row
    raise AssertionError(f"no row for {first}:\n{listing}")


def created_key(result: subprocess.CompletedProcess) -> tuple[str, str]:
    """The key id (from stderr) and the secret, alone on stdout."""
    ok(result)
    assert SECRET.fullmatch(result.stdout.strip()), result.stdout
    found = KEY_ID.search(result.stderr)
    assert found, result.stderr
    return found.group(), result.stdout.strip()


def test_keys_create_with_an_expiry_and_zero_retention_shows_both(cli: Cli) -> None:
    ok(cli("users", "add", "ann@example.com", "--password", PASSWORD))
    key_id, secret = created_key(
        cli("keys", "create", "ann@example.com", "--expires", "90d", "--zero-retention")
    )
    plain_id, _ = created_key(cli("keys", "create", "ann@example.com"))

    listing = ok(cli("keys", "list")).stdout
    assert secret not in listing
    expires = datetime.strptime(cells(listing, key_id)[EXPIRES], "%Y-%m-%d %H:%M UTC")
    in_90_days = datetime.now(UTC).replace(tzinfo=None) + timedelta(days=90)
    assert abs(expires - in_90_days) < timedelta(minutes=2)
    assert cells(listing, key_id)[ZERO_RETENTION] == "yes"
    assert cells(listing, plain_id)[EXPIRES] == "never"
    assert cells(listing, plain_id)[ZERO_RETENTION] == ""


@pytest.mark.parametrize("value", ["90x", "0", "-1d", "ninety"])
def test_keys_create_refuses_a_bad_expiry_as_bad_usage(tmp_path: Path, value: str) -> None:
    ok(run_cli("users", "add", "bob@example.com", "--password", PASSWORD, home=tmp_path))
    refused = run_cli("keys", "create", "bob@example.com", "--expires", value, home=tmp_path)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "--expires" in refused.stderr and "90d" in refused.stderr
    assert refused.stdout == ""
    listing = ok(run_cli("keys", "list", home=tmp_path)).stdout
    assert not KEY_ID.search(listing)  # no key was made


def test_keys_rotate_prints_the_successor_alone_and_carries_the_key_over(cli: Cli) -> None:
    ok(cli("users", "add", "cat@example.com", "--password", PASSWORD))
    old_id, old_secret = created_key(
        cli(
            "keys", "create", "cat@example.com", "--name", "mailer", "--rpm", "9",
            "--zero-retention", "--expires", "30d", "--budget", "5",
        )
    )  # fmt: skip

    rotated = ok(cli("keys", "rotate", old_id, "--grace", "1h"))
    new_id = next(k for k in KEY_ID.findall(rotated.stderr) if k != old_id)
    new_secret = rotated.stdout.strip()
    assert SECRET.fullmatch(new_secret) and new_secret != old_secret
    assert "not shown again" in rotated.stderr and new_secret not in rotated.stderr
    assert f"for key {new_id}" in rotated.stderr  # its budget, copied

    listing = ok(cli("keys", "list")).stdout
    old, new = cells(listing, old_id), cells(listing, new_id)
    assert old[REVOKED].endswith(f"(rotated to {new_id})")
    assert new[REVOKED] == ""
    assert new[2] == "mailer" and new[-2] == "rpm=9" and new[ZERO_RETENTION] == "yes"
    assert new[EXPIRES] != "never"
    budgets = ok(cli("budgets", "list")).stdout
    assert new_id in budgets and old_id in budgets

    again = cli("keys", "rotate", old_id)
    assert again.returncode == 1 and f"already rotated: its successor is {new_id}" in again.stderr
    assert again.stdout == ""


def test_keys_rotate_refuses_a_bad_grace_and_an_unknown_key(cli: Cli) -> None:
    ok(cli("users", "add", "dan@example.com", "--password", PASSWORD))
    key_id, _ = created_key(cli("keys", "create", "dan@example.com"))
    bad = cli("keys", "rotate", key_id, "--grace", "soon")
    assert bad.returncode == 2 and "--grace" in bad.stderr
    unknown = cli("keys", "rotate", "key_" + "0" * 24)
    assert unknown.returncode == 1 and "No key key_" in unknown.stderr
    rotated = ok(cli("keys", "rotate", key_id, "--grace", "0"))
    assert "stops working now" in rotated.stderr


def test_zero_retention_is_shown_and_switched_on_keys_and_users(cli: Cli) -> None:
    ok(cli("users", "add", "eve@example.com", "--password", PASSWORD, "--zero-retention"))
    ok(cli("users", "add", "fay@example.com", "--password", PASSWORD))
    users = ok(cli("users", "list")).stdout
    assert cells(users, "eve@example.com")[5] == "yes"
    assert cells(users, "fay@example.com")[5] == ""

    key_id, _ = created_key(cli("keys", "create", "eve@example.com"))
    shown = ok(cli("keys", "zero-retention", key_id)).stdout.strip()
    assert (
        shown == f"{key_id}: zero retention off (on for its user eve@example.com, which covers it)"
    )
    assert ok(cli("keys", "zero-retention", key_id, "on")).stdout.strip() == (
        f"{key_id}: zero retention on"
    )
    assert cells(ok(cli("keys", "list")).stdout, key_id)[ZERO_RETENTION] == "yes"

    off = ok(cli("users", "zero-retention", "EVE@example.com", "off")).stdout.strip()
    assert off == "eve@example.com: zero retention off"
    shown = ok(cli("users", "zero-retention", "eve@example.com")).stdout.strip()
    assert shown == "eve@example.com: zero retention off"
    assert cells(ok(cli("users", "list")).stdout, "eve@example.com")[5] == ""

    bad = cli("keys", "zero-retention", key_id, "maybe")
    assert bad.returncode == 2 and "on or off" in bad.stderr
    missing = cli("users", "zero-retention", "ghost@example.com", "on")
    assert missing.returncode == 1 and "No user ghost@example.com" in missing.stderr
