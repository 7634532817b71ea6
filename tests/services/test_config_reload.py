"""The configuration reload behind SIGHUP (services/config_reload.py), in process: which
upstream models get a new key, what is kept when the new configuration cannot be used, and
which other changes are reported as needing a restart. The signal itself, and the key on the
wire, are tested against a real server in tests/api/test_upstream_key_reload.py."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from aiservice.providers.registry import ModelRegistry
from aiservice.services.config_reload import ConfigReload, changed_fields
from aiservice.settings import ConfigError, Settings

UNUSED_UPSTREAM = "http://127.0.0.1:9/v1"  # never called: the tests only swap keys


def settings_with(home: Path, key_file: Path, **changes: object) -> Settings:
    models = [
        {"name": "remote-chat", "provider": "openai", "base_url": UNUSED_UPSTREAM,
         "api_key_file": str(key_file)},
        {"name": "remote-embed", "provider": "openai", "kind": "embedding",
         "base_url": UNUSED_UPSTREAM, "api_key_env": "RELOAD_TEST_EMBED_KEY"},
    ]  # fmt: skip
    return Settings(home=home, models=models, aliases={}, **changes)


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "upstream.key"
    path.write_text("sk-first\n")
    return path


@pytest.fixture
async def registry(tmp_path: Path, key_file: Path) -> AsyncIterator[ModelRegistry]:
    running = ModelRegistry(settings_with(tmp_path, key_file))
    for upstream in running.upstreams().values():  # only the upstreams: nothing local to load
        await upstream.start()
    yield running
    await running.close()


def reloader(registry: ModelRegistry, home: Path, load: Callable[[], Settings]) -> ConfigReload:
    return ConfigReload(registry, settings_with(home, home / "upstream.key"), load)


async def test_a_changed_key_file_gives_its_model_the_new_key(
    registry: ModelRegistry, tmp_path: Path, key_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    reload = reloader(registry, tmp_path, lambda: settings_with(tmp_path, key_file))
    assert reload.reload() == []  # nothing changed yet
    key_file.write_text("sk-second\n")
    with caplog.at_level(logging.INFO, logger="aiservice.services.config_reload"):
        assert reload.reload() == ["remote-chat"]
    assert "configuration reloaded" in caplog.text
    assert "sk-second" not in caplog.text and "sk-first" not in caplog.text
    assert reload.reload() == []  # the same key again: no change


async def test_a_changed_environment_variable_name_counts_too(
    registry: ModelRegistry, tmp_path: Path, key_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RELOAD_TEST_OTHER_KEY", "sk-from-the-other-variable")
    fresh = settings_with(tmp_path, key_file)
    fresh.models[1] = fresh.models[1].model_copy(update={"api_key_env": "RELOAD_TEST_OTHER_KEY"})
    reload = reloader(registry, tmp_path, lambda: fresh)
    assert reload.reload() == ["remote-embed"]


async def test_a_configuration_that_does_not_load_keeps_the_running_keys(
    registry: ModelRegistry, tmp_path: Path, key_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    def broken() -> Settings:
        raise ConfigError("config.toml: port: Input should be less than or equal to 65535")

    with caplog.at_level(logging.ERROR, logger="aiservice.services.config_reload"):
        assert reloader(registry, tmp_path, broken).reload() == []
    assert "configuration reload failed" in caplog.text
    # The key in use is still the first: a reload with the first key changes nothing.
    assert reloader(registry, tmp_path, lambda: settings_with(tmp_path, key_file)).reload() == []


async def test_an_unreadable_key_file_keeps_that_models_key(
    registry: ModelRegistry, tmp_path: Path, key_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    fresh = settings_with(tmp_path, key_file)  # validated while the file exists...
    reload = reloader(registry, tmp_path, lambda: fresh)
    key_file.unlink()  # ...and gone by the time it is read
    with caplog.at_level(logging.ERROR, logger="aiservice.services.config_reload"):
        assert reload.reload() == []
    assert "upstream key file unreadable" in caplog.text


async def test_other_changes_are_reported_as_needing_a_restart(
    registry: ModelRegistry, tmp_path: Path, key_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    fresh = settings_with(tmp_path, key_file, port=6001, retention_days=7)
    with caplog.at_level(logging.WARNING, logger="aiservice.services.config_reload"):
        reloader(registry, tmp_path, lambda: fresh).reload()
    assert "need a restart" in caplog.text


def test_changed_fields_ignores_the_key_fields_and_names_the_rest(
    tmp_path: Path, key_file: Path
) -> None:
    running = settings_with(tmp_path, key_file)
    other_file = tmp_path / "other.key"
    other_file.write_text("sk-other")
    only_keys = settings_with(tmp_path, other_file)
    only_keys.models[1] = only_keys.models[1].model_copy(update={"api_key_env": "ELSEWHERE"})
    assert changed_fields(running, only_keys) == []

    moved = settings_with(tmp_path, key_file, port=6001)
    moved.models[0] = moved.models[0].model_copy(update={"timeout_s": 5.0})
    assert changed_fields(running, moved) == ["port", "models"]
