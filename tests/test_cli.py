"""The `aiservice` command: help, refusing bad configuration, flags, the master key bootstrap."""

from __future__ import annotations

import hashlib
import json
import re
import stat
import subprocess
from pathlib import Path

import httpx
import pytest

from support import MASTER_KEY, free_port, run_cli, start_server, stop_server

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
