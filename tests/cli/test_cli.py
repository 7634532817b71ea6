"""The `aiservice` command: help, refusing bad configuration, flags, the master key bootstrap,
users and API keys."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import secrets
import stat
import subprocess
from pathlib import Path

import httpx
import pytest

from support import MASTER_KEY, RunningServer, free_port, run_cli, start_server, stop_server

GENERATED_KEY = re.compile(r"sk-[A-Za-z0-9_\-]{20,}")


def test_serve_help_lists_its_options(tmp_path: Path) -> None:
    result = run_cli("serve", "--help", home=tmp_path)
    assert result.returncode == 0, result.stderr
    for option in ("--host", "--port", "--config"):
        assert option in result.stdout
    assert "5000" in result.stdout and "127.0.0.1" in result.stdout


def test_no_arguments_shows_the_commands(tmp_path: Path) -> None:
    result = run_cli(home=tmp_path)
    assert "serve" in result.stdout + result.stderr


def serve_with(config: Path, home: Path, *args: str) -> subprocess.CompletedProcess:
    return run_cli("serve", "--port", str(free_port()), "--config", str(config), *args, home=home)


def test_a_missing_model_file_stops_serve_naming_file_entry_and_field(tmp_path: Path) -> None:
    # A long directory name: the message must not be wrapped at the terminal width.
    directory = tmp_path / ("a-rather-long-directory-name-" * 3)
    directory.mkdir()
    config = directory / "config.toml"
    config.write_text('[[models]]\nname = "mine"\npath = "/nope.gguf"\n', encoding="utf-8")
    result = serve_with(config, tmp_path)
    assert result.returncode != 0
    assert "Invalid configuration" in result.stderr
    assert f"{config}: models[0].path: no such file: /nope.gguf" in result.stderr.splitlines()
    assert "Traceback" not in result.stderr + result.stdout
    assert "Uvicorn running" not in result.stderr


def test_invalid_toml_stops_serve(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text("port = \n", encoding="utf-8")
    result = serve_with(config, tmp_path)
    assert result.returncode != 0
    assert f"{config}: not valid TOML" in result.stderr
    assert "Traceback" not in result.stderr


def test_an_unknown_top_level_key_stops_serve(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text("prot = 5001\n", encoding="utf-8")
    result = serve_with(config, tmp_path)
    assert result.returncode != 0
    assert f"{config}: prot: " in result.stderr


def test_a_missing_config_file_stops_serve(tmp_path: Path) -> None:
    result = serve_with(tmp_path / "nowhere.toml", tmp_path)
    assert result.returncode != 0
    assert f"{tmp_path / 'nowhere.toml'}: no such configuration file" in result.stderr


def test_a_bad_environment_value_stops_serve_naming_the_variable(tmp_path: Path) -> None:
    result = run_cli("serve", home=tmp_path, env={"AISERVICE_LOG_LEVEL": "CHATTY"})
    assert result.returncode != 0
    assert "environment variable AISERVICE_LOG_LEVEL: log_level: " in result.stderr


@pytest.mark.parametrize("port", ["70000", "-1", "http"])
def test_a_bad_port_flag_stops_serve(tmp_path: Path, port: str) -> None:
    result = run_cli("serve", "--port", port, home=tmp_path)
    assert result.returncode != 0
    assert "--port" in result.stderr


def test_the_port_flag_beats_the_environment(tmp_path: Path) -> None:
    """start_server passes --port; with AISERVICE_PORT naming another port it must still win."""
    server = start_server(tmp_path / "home", env={"AISERVICE_PORT": str(free_port())})
    try:
        assert httpx.get(f"{server.base_url}/health", timeout=10).status_code == 200
    finally:
        stop_server(server)


def authenticates(base_url: str, key: str) -> bool:
    response = httpx.get(
        f"{base_url}/v1/models", headers={"Authorization": f"Bearer {key}"}, timeout=30
    )
    assert response.status_code in (200, 401), response.text
    return response.status_code == 200


def test_master_key_bootstrap(tmp_path: Path) -> None:
    """No AISERVICE_MASTER_KEY: the first start prints a new key once and keeps only its hash;
    a restart prints nothing new and the key still works."""
    home = tmp_path / "home"
    first_log = tmp_path / "first.log"
    server = start_server(home, env={"AISERVICE_MASTER_KEY": None}, log_path=first_log)
    try:
        output = first_log.read_text(encoding="utf-8")
        keys = GENERATED_KEY.findall(output)
        assert len(keys) == 1, output
        key = keys[0]
        assert output.count(key) == 1
        assert authenticates(server.base_url, key)
        assert not authenticates(server.base_url, MASTER_KEY)  # the test key is not set here
        assert not authenticates(server.base_url, key + "x")
    finally:
        stop_server(server)

    # The home keeps the key's SHA-256, readable by the owner only, and never the key itself.
    stored = home / "master_key.sha256"
    assert stored.read_text(encoding="ascii").strip() == hashlib.sha256(key.encode()).hexdigest()
    assert stat.S_IMODE(stored.stat().st_mode) == 0o600
    for path in home.rglob("*"):
        if path.is_file():
            assert key.encode() not in path.read_bytes(), path
    # The key is on the console banner only (plain text), in no structured log line.
    lines = server.log_lines()
    banner = [line["raw"] for line in lines if set(line) == {"raw"} and key in line["raw"]]
    assert len(banner) == 1
    assert all(key not in json.dumps(line) for line in lines if set(line) != {"raw"})

    second_log = tmp_path / "second.log"
    again = start_server(home, env={"AISERVICE_MASTER_KEY": None}, log_path=second_log)
    try:
        output = second_log.read_text(encoding="utf-8")
        assert not GENERATED_KEY.search(output), output
        assert "generated" not in output
        assert authenticates(again.base_url, key)
    finally:
        stop_server(again)
    assert stored.read_text(encoding="ascii").strip() == hashlib.sha256(key.encode()).hexdigest()


def test_a_configured_master_key_writes_no_hash(tmp_path: Path) -> None:
    home = tmp_path / "home"
    server = start_server(home, log_path=tmp_path / "server.log")
    try:
        assert authenticates(server.base_url, MASTER_KEY)
    finally:
        stop_server(server)
    assert not (home / "master_key.sha256").exists()
    assert MASTER_KEY not in (tmp_path / "server.log").read_text(encoding="utf-8")


def test_a_damaged_master_key_hash_stops_serve_naming_the_file(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "master_key.sha256").write_text("not a digest\n", encoding="ascii")
    result = run_cli("serve", "--port", str(free_port()), home=home)
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert f"{home / 'master_key.sha256'} does not hold a SHA-256 hex digest" in output
    assert "Traceback" not in output and 'File "' not in output
    lines = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    assert any(line["level"] == "ERROR" for line in lines), lines


# Users and API keys, through the real `aiservice` command on the configured database.

CLI_PASSWORD = "cli-Password-0451"
KEY_ID = re.compile(r"\bkey_[0-9a-f]{24}\b")


def cli_ok(*args: str, home: Path, **kwargs: object) -> subprocess.CompletedProcess:
    result = run_cli(*args, home=home, **kwargs)  # type: ignore[arg-type]
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    return result


def cli_fails(*args: str, home: Path, message: str, **kwargs: object) -> None:
    """The command exits 1 with `message` on stderr and no traceback."""
    result = run_cli(*args, home=home, **kwargs)  # type: ignore[arg-type]
    assert result.returncode == 1, result.stdout + result.stderr
    assert message in result.stderr, result.stderr
    assert "Traceback" not in result.stdout + result.stderr


def test_users_add_list_disable(tmp_path: Path) -> None:
    added = cli_ok("users", "add", "Ann@Example.com", "--password", CLI_PASSWORD, home=tmp_path)
    assert re.fullmatch(r"Added ann@example\.com \(user_[0-9a-f]{24}\)\.\n", added.stdout)
    cli_ok("users", "add", "boss@example.com", "--password", CLI_PASSWORD, "--admin", home=tmp_path)

    listing = cli_ok("users", "list", home=tmp_path).stdout
    rows = {line.split("│")[2].strip(): line for line in listing.splitlines() if "@" in line}
    assert set(rows) == {"ann@example.com", "boss@example.com"}
    assert "yes" in rows["boss@example.com"] and "yes" not in rows["ann@example.com"]
    for output in (added.stdout + added.stderr, listing):
        assert CLI_PASSWORD not in output and "argon2" not in output

    disabled = cli_ok("users", "disable", "ANN@example.com", home=tmp_path)
    assert disabled.stdout.strip() == "Disabled ann@example.com."
    listing = cli_ok("users", "list", home=tmp_path).stdout
    ann = next(line for line in listing.splitlines() if "ann@example.com" in line)
    assert ann.split("│")[4].strip() == "yes"


def test_users_add_prompts_for_the_password_twice(tmp_path: Path) -> None:
    # A mismatched confirmation asks again; the matching pair is taken.
    typed = f"{CLI_PASSWORD}\nsomething else\n{CLI_PASSWORD}\n{CLI_PASSWORD}\n"
    result = cli_ok("users", "add", "prompted@example.com", home=tmp_path, input=typed)
    assert "Password" in result.stdout + result.stderr
    assert "do not match" in result.stdout + result.stderr
    assert CLI_PASSWORD not in result.stdout + result.stderr  # hidden input is not echoed
    assert "Added prompted@example.com" in result.stdout
    # Which password was stored: the key's owner can log in with it on a server (below, via
    # the database the CLI wrote) — here, a duplicate add proves the user exists.
    cli_fails(
        "users",
        "add",
        "prompted@example.com",
        "--password",
        CLI_PASSWORD,
        home=tmp_path,
        message="A user prompted@example.com already exists.",
    )


def test_users_errors_exit_1_with_a_message(tmp_path: Path) -> None:
    cli_ok("users", "add", "dup@example.com", "--password", CLI_PASSWORD, home=tmp_path)
    cli_fails(
        "users",
        "add",
        "DUP@example.com",
        "--password",
        CLI_PASSWORD,
        home=tmp_path,
        message="already exists",
    )
    cli_fails(
        "users", "add", "nope", "--password", CLI_PASSWORD, home=tmp_path, message="e-mail address"
    )
    cli_fails(
        "users",
        "add",
        "short@example.com",
        "--password",
        "1234567",
        home=tmp_path,
        message="at least 8 characters",
    )
    cli_fails("users", "disable", "ghost@example.com", home=tmp_path, message="No user")
    # An abandoned prompt (end of input) adds nobody.
    result = run_cli("users", "add", "quit@example.com", home=tmp_path, input="")
    assert result.returncode != 0
    assert "quit@example.com" not in cli_ok("users", "list", home=tmp_path).stdout


def test_keys_create_list_revoke(tmp_path: Path) -> None:
    cli_ok("users", "add", "kim@example.com", "--password", CLI_PASSWORD, home=tmp_path)
    cli_ok("users", "add", "lee@example.com", "--password", CLI_PASSWORD, home=tmp_path)

    created = cli_ok("keys", "create", "kim@example.com", "--name", "my laptop", home=tmp_path)
    key = created.stdout.strip()
    assert GENERATED_KEY.fullmatch(key), created.stdout  # stdout is the key alone: pipeable
    assert created.stdout == key + "\n"
    key_id = KEY_ID.search(created.stderr).group()  # type: ignore[union-attr]
    assert "not shown again" in created.stderr and key not in created.stderr
    other = cli_ok("keys", "create", "lee@example.com", home=tmp_path).stdout.strip()

    everyone = cli_ok("keys", "list", home=tmp_path).stdout
    kims = cli_ok("keys", "list", "KIM@example.com", home=tmp_path).stdout
    for listing in (everyone, kims):
        assert key not in listing and key[5:-4] not in listing
        row = next(line for line in listing.splitlines() if key_id in line)
        cells = [cell.strip() for cell in row.split("│")[1:-1]]
        assert cells[:4] == [key_id, "kim@example.com", "my laptop", f"{key[:5]}…{key[-4:]}"]
        assert cells[5] == ""  # not revoked
    assert "lee@example.com" in everyone and "lee@example.com" not in kims
    assert other not in everyone

    revoked = cli_ok("keys", "revoke", key_id, home=tmp_path)
    assert revoked.stdout.strip() == f"Revoked {key_id}."
    row = next(
        line for line in cli_ok("keys", "list", home=tmp_path).stdout.splitlines() if key_id in line
    )
    assert row.split("│")[6].strip().endswith("UTC")
    cli_fails("keys", "revoke", key_id, home=tmp_path, message=f"No active key {key_id}.")


def test_keys_errors_exit_1_with_a_message(tmp_path: Path) -> None:
    cli_fails(
        "keys", "create", "ghost@example.com", home=tmp_path, message="No user ghost@example.com"
    )
    cli_fails(
        "keys", "list", "ghost@example.com", home=tmp_path, message="No user ghost@example.com"
    )
    cli_fails("keys", "revoke", "key_nope", home=tmp_path, message="No active key key_nope")
    cli_ok("users", "add", "named@example.com", "--password", CLI_PASSWORD, home=tmp_path)
    cli_fails(
        "keys", "create", "named@example.com", "--name", " ", home=tmp_path, message="1 to 128"
    )


def test_the_cli_manages_a_running_servers_accounts(
    stored_server: RunningServer, request: pytest.FixtureRequest
) -> None:
    """On SQLite and PostgreSQL: what the CLI writes to the server's database counts on the
    server's next request — a new key, a revocation, a disabled user."""
    backend = request.node.callspec.params["stored_server"]
    env = {"DATABASE_URL": request.getfixturevalue("postgres_url")} if backend == "postgres" else {}
    home = stored_server.home if backend == "sqlite" else stored_server.home / "cli"
    email = f"cli-{secrets.token_hex(4)}@example.com"

    def cli(*args: str, **kwargs: object) -> subprocess.CompletedProcess:
        return cli_ok(*args, home=home, env=env, **kwargs)

    typed = f"{CLI_PASSWORD}\n{CLI_PASSWORD}\n"
    cli("users", "add", email, input=typed)
    created = cli("keys", "create", email)
    key = created.stdout.strip()
    key_id = KEY_ID.search(created.stderr).group()  # type: ignore[union-attr]
    basic = "Basic " + base64.b64encode(f"{email}:{CLI_PASSWORD}".encode()).decode()

    def status(authorization: str) -> int:
        return httpx.get(
            f"{stored_server.base_url}/v1/models",
            headers={"Authorization": authorization},
            timeout=30,
        ).status_code

    assert status(f"Bearer {key}") == 200
    assert status(basic) == 200  # the prompted password is the stored one
    cli("keys", "revoke", key_id)
    assert status(f"Bearer {key}") == 401
    second = cli("keys", "create", email).stdout.strip()
    assert status(f"Bearer {second}") == 200
    cli("users", "disable", email)
    assert status(f"Bearer {second}") == 401
    assert status(basic) == 401
