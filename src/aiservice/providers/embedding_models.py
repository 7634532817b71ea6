"""The embedding models served without being configured: the bundled all-MiniLM-L6-v2 under
its own name, and OpenAI's embedding model names as aliases of it.

The registry serves these next to the configured models and the usage ledger prices them,
so both read the served models from here (`served_configs`).
"""

from __future__ import annotations

from aiservice.settings import ModelConfig, Settings

BUNDLED_EMBEDDING_MODEL = "all-minilm-l6-v2"
# Answered by the local embedding model while no model or alias of the name is configured,
# as gpt-4o-mini is by the local chat model: clients written for OpenAI work unchanged (their
# vectors have the local model's 384 dimensions, not OpenAI's).
OPENAI_EMBEDDING_NAMES = (
    "text-embedding-3-small",
    "text-embedding-3-large",
    "text-embedding-ada-002",
)


def served_configs(settings: Settings) -> list[ModelConfig]:
    """The configured models, and the bundled embedding model unless a local embedding model
    (or any model of its name) is configured."""
    models = list(settings.models)
    if any(_is_local_embedding(model) or model.name == BUNDLED_EMBEDDING_MODEL for model in models):
        return models
    return [*models, ModelConfig(name=BUNDLED_EMBEDDING_MODEL, kind="embedding")]


def embedding_aliases(models: list[ModelConfig], taken: set[str]) -> dict[str, str]:
    """OpenAI's embedding names → the first local embedding model, each unless `taken` (the
    names of configured models and aliases)."""
    local = next((model.name for model in models if _is_local_embedding(model)), None)
    if local is None:
        return {}
    return {name: local for name in OPENAI_EMBEDDING_NAMES if name not in taken}


def _is_local_embedding(model: ModelConfig) -> bool:
    return model.kind == "embedding" and model.provider == "local"
