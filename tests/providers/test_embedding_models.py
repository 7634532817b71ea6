"""Which embedding models are served under which names, how an embedding model is configured,
and how the registry keeps chat and embedding models apart (nothing is loaded here)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from aiservice.errors import InvalidRequest, ModelNotFound
from aiservice.metering.pricing import PriceList
from aiservice.providers.embedding_local import LocalEmbedder
from aiservice.providers.embedding_models import BUNDLED_EMBEDDING_MODEL, served_configs
from aiservice.providers.registry import ModelRegistry, ServedEmbeddingModel
from aiservice.providers.upstream_embeddings import UpstreamEmbedder
from aiservice.settings import ConfigError, ModelConfig, Settings, load_settings

OPENAI_NAMES = {"text-embedding-3-small", "text-embedding-3-large", "text-embedding-ada-002"}
UPSTREAM = "http://127.0.0.1:9/v1"  # never called: nothing is started


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.upper().startswith("AISERVICE_") or name == "OPENAI_API_KEY":
            monkeypatch.delenv(name)
    monkeypatch.setenv("AISERVICE_HOME", str(tmp_path / "home"))


def upstream_embedder(name: str) -> ModelConfig:
    return ModelConfig(name=name, provider="openai", kind="embedding", base_url=UPSTREAM)


def test_the_defaults_serve_the_bundled_model_and_openais_names_for_it():
    registry = ModelRegistry(Settings())
    for name in (BUNDLED_EMBEDDING_MODEL, *OPENAI_NAMES):
        served = registry.resolve_embedding(name)
        assert served.served_by == BUNDLED_EMBEDDING_MODEL
        assert isinstance(served.embedder, LocalEmbedder)
    names = {model.name for model in registry.served_models()}
    assert {BUNDLED_EMBEDDING_MODEL, *OPENAI_NAMES, "gpt-4o-mini"} <= names


def test_a_configured_upstream_of_an_openai_name_wins_over_its_alias():
    settings = Settings(
        models=[ModelConfig(name="chat"), upstream_embedder("text-embedding-3-small")]
    )
    registry = ModelRegistry(settings)
    small = registry.resolve_embedding("text-embedding-3-small")
    assert small.served_by == "text-embedding-3-small"
    assert isinstance(small.embedder, UpstreamEmbedder)
    assert registry.resolve_embedding("text-embedding-3-large").served_by == BUNDLED_EMBEDDING_MODEL
    # Its own circuit, then its host's.
    assert registry.upstream_breakers() == [small.embedder.breaker, small.embedder.circuits.host]


def test_a_local_embedding_model_of_another_name_replaces_the_bundled_entry():
    settings = Settings(models=[ModelConfig(name="minilm", kind="embedding")])
    assert [model.name for model in served_configs(settings)] == ["minilm"]
    registry = ModelRegistry(settings)
    assert registry.resolve_embedding("text-embedding-ada-002").served_by == "minilm"
    with pytest.raises(ModelNotFound):
        registry.resolve_embedding(BUNDLED_EMBEDDING_MODEL)


def test_an_alias_may_name_an_embedding_model():
    registry = ModelRegistry(Settings(aliases={"my-embedder": BUNDLED_EMBEDDING_MODEL}))
    served = registry.lookup("my-embedder")
    assert isinstance(served, ServedEmbeddingModel)
    assert (served.name, served.served_by) == ("my-embedder", BUNDLED_EMBEDDING_MODEL)


def test_each_kind_refuses_the_other_with_a_400_naming_the_model():
    registry = ModelRegistry(Settings())
    with pytest.raises(InvalidRequest) as chat_asked:
        registry.resolve(BUNDLED_EMBEDDING_MODEL)
    with pytest.raises(InvalidRequest) as embedding_asked:
        registry.resolve_embedding("gpt-4o-mini")
    for refused in (chat_asked.value, embedding_asked.value):
        assert (refused.status_code, refused.param) == (400, "model")
    with pytest.raises(ModelNotFound):
        registry.resolve_embedding("no-such-model")
    assert registry.lookup(BUNDLED_EMBEDDING_MODEL).name == BUNDLED_EMBEDDING_MODEL
    assert registry.lookup("gpt-4o-mini").name == "gpt-4o-mini"


def test_the_ledger_knows_the_bundled_model_and_openais_embedding_prices():
    prices = PriceList(
        Settings(models=[ModelConfig(name="chat"), _openai("text-embedding-3-small")])
    )
    assert prices.provider(BUNDLED_EMBEDDING_MODEL) == "local"
    assert prices.cost(BUNDLED_EMBEDDING_MODEL, 1_000_000, 0) == 0.0
    assert prices.provider("text-embedding-3-small") == "openai"
    assert prices.cost("text-embedding-3-small", 1_000_000, 0) == pytest.approx(0.02)


def _openai(name: str) -> ModelConfig:
    return ModelConfig(name=name, provider="openai", kind="embedding")


@pytest.mark.parametrize(
    ("extra", "complaint"),
    [
        ('fallbacks = ["chat"]', "takes no fallbacks"),
        ("context_window = 4096", "'context_window' does not apply to an embedding model"),
        ("top_k = 10", "'top_k' does not apply to an embedding model"),
        ('kind = "vector"', "kind"),
    ],
)
def test_an_embedding_entry_refuses_what_does_not_apply(tmp_path, extra, complaint):
    config = tmp_path / "config.toml"
    kind = "" if extra.startswith("kind") else 'kind = "embedding"\n'
    config.write_text(
        f'[[models]]\nname = "chat"\n\n[[models]]\nname = "embedder"\n{kind}{extra}\n',
        encoding="utf-8",
    )
    with pytest.raises(ConfigError, match=complaint):
        load_settings(config)


def test_an_upstream_embedding_entry_loads_from_toml(tmp_path):
    config = tmp_path / "config.toml"
    config.write_text(
        f'[[models]]\nname = "embed-large"\nprovider = "openai"\nkind = "embedding"\n'
        f'base_url = "{UPSTREAM}"\nupstream_model = "text-embedding-3-large"\n',
        encoding="utf-8",
    )
    [model] = load_settings(config).models
    assert (model.kind, model.upstream_name, model.upstream_url) == (
        "embedding",
        "text-embedding-3-large",
        UPSTREAM,
    )
    assert ModelConfig(name="chat").kind == "chat"  # the default
