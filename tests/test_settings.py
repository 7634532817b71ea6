"""Settings: defaults, the TOML file, AISERVICE_* variables over it, and errors that say where."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from aiservice.settings import (
    DEFAULT_LOCAL_MODEL,
    ConfigError,
    ModelConfig,
    Settings,
    load_settings,
)


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No AISERVICE_* variable of the test run leaks in; the home is an empty directory."""
    for name in list(os.environ):
        if name.upper().startswith("AISERVICE_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AISERVICE_HOME", str(tmp_path / "home"))


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_bind_localhost_port_5000() -> None:
    settings = Settings()
    assert settings.host == "127.0.0.1"
    assert settings.port == 5000
    assert settings.master_key is None
    assert settings.log_level == "INFO"
    assert settings.max_request_bytes == 8 * 1024 * 1024
    assert [m.name for m in settings.models] == [DEFAULT_LOCAL_MODEL]
    assert settings.models[0].provider == "local" and settings.models[0].path is None
    assert settings.aliases["gpt-4o-mini"] == DEFAULT_LOCAL_MODEL


def test_home_comes_from_aiservice_home(tmp_path: Path) -> None:
    settings = Settings()
    assert settings.home == tmp_path / "home"
    assert settings.config_file == tmp_path / "home" / "config.toml"


def test_without_a_file_load_settings_gives_the_defaults() -> None:
    assert load_settings() == Settings()


def test_the_file_overrides_the_defaults(tmp_path: Path) -> None:
    config = write(
        tmp_path / "config.toml",
        'host = "0.0.0.0"\nport = 6001\nlog_level = "DEBUG"\n\n'
        '[[models]]\nname = "tiny"\ncontext_window = 2048\ntop_k = 0\n\n'
        '[aliases]\n"gpt-4o-mini" = "tiny"\n',
    )
    settings = load_settings(config)
    assert (settings.host, settings.port, settings.log_level) == ("0.0.0.0", 6001, "DEBUG")
    assert settings.models == [ModelConfig(name="tiny", context_window=2048, top_k=0)]
    assert settings.aliases == {"gpt-4o-mini": "tiny"}


def test_the_default_file_in_the_home_is_read(tmp_path: Path) -> None:
    (tmp_path / "home").mkdir()
    write(tmp_path / "home" / "config.toml", "port = 6002\n")
    assert load_settings().port == 6002


def test_environment_overrides_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = write(tmp_path / "config.toml", 'host = "0.0.0.0"\nport = 6001\nlog_level = "DEBUG"\n')
    monkeypatch.setenv("AISERVICE_PORT", "7001")
    monkeypatch.setenv("AISERVICE_LOG_LEVEL", "WARNING")
    monkeypatch.setenv("AISERVICE_MASTER_KEY", "sk-from-env")
    settings = load_settings(config)
    assert settings.port == 7001
    assert settings.log_level == "WARNING"
    assert settings.master_key is not None
    assert settings.master_key.get_secret_value() == "sk-from-env"
    assert settings.host == "0.0.0.0"  # not overridden: the file's value stands


def test_environment_overrides_file_models_as_json(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = write(tmp_path / "config.toml", '[[models]]\nname = "from-file"\n')
    monkeypatch.setenv("AISERVICE_MODELS", '[{"name": "from-env", "threads": 2}]')
    assert load_settings(config).models == [ModelConfig(name="from-env", threads=2)]


def test_the_master_key_is_secret_in_reprs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AISERVICE_MASTER_KEY", "sk-do-not-print-me")
    settings = load_settings()
    assert "sk-do-not-print-me" not in repr(settings)
    assert "sk-do-not-print-me" not in str(settings.model_dump())


def problems(config: Path) -> str:
    with pytest.raises(ConfigError) as caught:
        load_settings(config)
    return str(caught.value)


def test_a_missing_model_file_names_the_file_the_entry_and_the_field(tmp_path: Path) -> None:
    config = write(
        tmp_path / "config.toml",
        '[[models]]\nname = "good"\n\n[[models]]\nname = "bad"\npath = "/nope.gguf"\n',
    )
    message = problems(config)
    assert f"{config}: models[1].path: " in message
    assert "/nope.gguf" in message
    assert "Value error" not in message


def test_every_problem_is_listed(tmp_path: Path) -> None:
    config = write(
        tmp_path / "config.toml",
        'port = "many"\n[[models]]\nname = "m"\npath = "/nope.gguf"\ncolour = "blue"\n',
    )
    lines = problems(config).splitlines()
    assert any(line.startswith(f"{config}: port: ") for line in lines), lines
    assert any(line.startswith(f"{config}: models[0].path: ") for line in lines), lines
    assert any(line.startswith(f"{config}: models[0].colour: ") for line in lines), lines


@pytest.mark.parametrize(
    ("toml", "location"),
    [
        ("frobnicate = true\n", "frobnicate"),
        ("port = 70000\n", "port"),
        ('log_level = "LOUD"\n', "log_level"),
        ("max_request_bytes = 10\n", "max_request_bytes"),
        ('[[models]]\nname = ""\n', "models[0].name"),
        ('[[models]]\nname = "m"\nprovider = "anthropic"\n', "models[0].provider"),
        ('[[models]]\nname = "m"\ncontext_window = 16\n', "models[0].context_window"),
        ('[[models]]\nname = "m"\nmin_p = 2.0\n', "models[0].min_p"),
        ("[[models]]\npath = 3\n", "models[0].name"),
        ('models = "smollm"\n', "models"),
        ('[[models]]\nname = "m"\nbase_url = "http://x/v1"\n', "models[0]"),
        ('[[models]]\nname = "m"\nprovider = "openai"\nthreads = 2\n', "models[0]"),
        (
            '[[models]]\nname = "m"\nprovider = "openai"\nbase_url = "ftp://x"\n',
            "models[0].base_url",
        ),
        (
            '[[models]]\nname = "m"\nprovider = "openai"\nmax_retries = -1\n',
            "models[0].max_retries",
        ),
        ('[[models]]\nname = "m"\nfallbacks = ["nowhere"]\n', "models[0].fallbacks"),
        ('[[models]]\nname = "m"\nfallbacks = ["m"]\n', "models[0]"),
    ],
)
def test_an_invalid_entry_is_named(tmp_path: Path, toml: str, location: str) -> None:
    config = write(tmp_path / "config.toml", toml)
    assert f"{config}: {location}: " in problems(config)


def test_invalid_toml_syntax_names_the_file(tmp_path: Path) -> None:
    config = write(tmp_path / "config.toml", 'port = 5000\n[[models]\nname = "x"\n')
    message = problems(config)
    assert message.startswith(f"{config}: not valid TOML")
    assert "line 2" in message


def test_a_file_that_is_not_utf8_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_bytes(b'host = "\xff\xfe"\n')
    assert problems(config).startswith(f"{config}: not valid TOML")


def test_an_explicit_file_must_exist(tmp_path: Path) -> None:
    missing = tmp_path / "absent.toml"
    assert problems(missing) == f"{missing}: no such configuration file"


def test_a_bad_environment_value_is_blamed_on_the_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = write(tmp_path / "config.toml", "port = 6001\n")
    monkeypatch.setenv("AISERVICE_PORT", "not-a-port")
    message = problems(config)
    assert message.startswith("environment variable AISERVICE_PORT: port: "), message


def test_openai_api_key_sends_openai_model_names_to_openai(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AISERVICE_HOME", str(tmp_path))
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    settings = load_settings()
    upstream = {m.name: m for m in settings.models if m.provider == "openai"}
    assert set(upstream) == {"gpt-4o", "gpt-4o-mini", "gpt-4-turbo", "gpt-3.5-turbo"}
    assert all(m.upstream_url == "https://api.openai.com/v1" for m in upstream.values())
    assert all(m.fallbacks == ["smollm2-135m-instruct"] for m in upstream.values())
    # Configured models say otherwise: only they are served.
    write(tmp_path / "config.toml", '[[models]]\nname = "mine"\n')
    assert [m.name for m in load_settings().models] == ["mine"]


def test_without_openai_api_key_only_the_local_model_is_configured(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AISERVICE_HOME", str(tmp_path))
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    assert [m.provider for m in load_settings().models] == ["local"]
