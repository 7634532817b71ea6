"""Which provider answers which model name: configured models first, then aliases. Chat and
embedding models are kept apart: each route resolves only its kind, and refuses the other with
a 400 that says why."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from redis.asyncio import Redis

from aiservice.errors import InvalidRequest, ModelNotFound
from aiservice.providers.base import ChatProvider
from aiservice.providers.breaker import CircuitBreaker
from aiservice.providers.embedding import EmbeddingProvider
from aiservice.providers.embedding_local import LocalEmbedder
from aiservice.providers.embedding_models import embedding_aliases, served_configs
from aiservice.providers.fallback import FallbackProvider
from aiservice.providers.local import LocalProvider
from aiservice.providers.upstream import UpstreamProvider
from aiservice.providers.upstream_embeddings import UpstreamEmbedder
from aiservice.providers.upstream_model import share_host_circuits
from aiservice.settings import ModelConfig, Settings

log = logging.getLogger(__name__)

# The provider of each kind a model's `provider` setting names.
_PROVIDER_OF_KIND: dict[str, Callable[[ModelConfig, Redis | None], ChatProvider]] = {
    "local": lambda model, _redis: LocalProvider(model),
    "openai": UpstreamProvider,
}
_EMBEDDER_OF_KIND: dict[str, Callable[[ModelConfig, Redis | None], EmbeddingProvider]] = {
    "local": lambda model, _redis: LocalEmbedder(model),
    "openai": UpstreamEmbedder,
}


@dataclass(frozen=True, slots=True)
class ServedModel:
    """A name clients may ask for, and the configured model that answers it."""

    name: str
    served_by: str
    provider: ChatProvider
    created: int = 0

    @property
    def is_alias(self) -> bool:
        return self.name != self.served_by


@dataclass(frozen=True, slots=True)
class ServedEmbeddingModel:
    """A name clients may ask embeddings of, and the configured model that answers it."""

    name: str
    served_by: str
    embedder: EmbeddingProvider
    created: int = 0


class ModelRegistry:
    """Resolves requested model names; built once from the settings."""

    def __init__(self, settings: Settings):
        created = int(time.time())
        # Shared by the upstreams' circuit breakers; connects on first use.
        self._redis = Redis.from_url(settings.redis_url) if settings.redis_url else None
        configs = served_configs(settings)  # with the bundled embedding model
        chat = [model for model in configs if model.kind == "chat"]
        self._providers: dict[str, ChatProvider] = {
            model.name: _PROVIDER_OF_KIND[model.provider](model, self._redis) for model in chat
        }
        self._embedders: dict[str, EmbeddingProvider] = {
            model.name: _EMBEDDER_OF_KIND[model.provider](model, self._redis)
            for model in configs
            if model.kind == "embedding"
        }
        self._host_breakers = share_host_circuits(
            [*self._providers.values(), *self._embedders.values()]
        )
        self._served: dict[str, ServedModel] = {}
        for model in chat:
            provider = self._providers[model.name]
            if model.fallbacks:
                provider = FallbackProvider(provider, self._fallbacks_of(model.fallbacks))
            self._served[model.name] = ServedModel(model.name, model.name, provider, created)
        self._embedding_served = {
            name: ServedEmbeddingModel(name, name, embedder, created)
            for name, embedder in self._embedders.items()
        }
        aliases = dict(settings.aliases)
        aliases |= embedding_aliases(
            configs, set(self._served) | set(self._embedding_served) | set(aliases)
        )
        for alias, target in aliases.items():
            self._add_alias(alias, target, created)

    def _add_alias(self, alias: str, target: str, created: int) -> None:
        if alias in self._served or alias in self._embedding_served:
            return  # a configured model of that name wins over the alias
        if target in self._embedders:
            embedder = self._embedding_served[target].embedder
            self._embedding_served[alias] = ServedEmbeddingModel(alias, target, embedder, created)
        elif target in self._providers:
            provider = self._served[target].provider  # with the target's fallbacks
            self._served[alias] = ServedModel(alias, target, provider, created)
        else:
            log.warning("alias ignored: unknown target", extra={"alias": alias, "target": target})
            return
        log.info(
            f"{alias} is answered by {target}: no upstream is configured for it",
            extra={"alias": alias, "served_by": target},
        )

    def _fallbacks_of(self, names: list[str]) -> Callable[[], list[tuple[str, ChatProvider]]]:
        def resolved() -> list[tuple[str, ChatProvider]]:
            served = [self._served[name] for name in names if name in self._served]
            return [(model.served_by, self._providers[model.served_by]) for model in served]

        return resolved

    def resolve(self, name: str) -> ServedModel:
        """The chat model of that name (chat, text completions, responses)."""
        served = self._served.get(name)
        if served is not None:
            return served
        if name in self._embedding_served:
            raise InvalidRequest(
                f"The model `{name}` is an embedding model: it does not generate text. "
                "Ask it for embeddings (POST /v1/embeddings), or name a chat model.",
                param="model",
                code="model_not_supported",
            )
        raise ModelNotFound(name)

    def resolve_embedding(self, name: str) -> ServedEmbeddingModel:
        """The embedding model of that name (POST /v1/embeddings)."""
        served = self._embedding_served.get(name)
        if served is not None:
            return served
        if name in self._served:
            example = next(iter(self._embedders), None)
            raise InvalidRequest(
                f"The model `{name}` does not support embeddings: it is a chat model. Name an "
                "embedding model" + (f", such as `{example}`." if example else "."),
                param="model",
                code="model_not_supported",
            )
        raise ModelNotFound(name)

    def lookup(self, name: str) -> ServedModel | ServedEmbeddingModel:
        """The served model of that name, of either kind (GET /v1/models/{id})."""
        served = self._served.get(name) or self._embedding_served.get(name)
        if served is None:
            raise ModelNotFound(name)
        return served

    def served_models(self) -> list[ServedModel | ServedEmbeddingModel]:
        return [*self._served.values(), *self._embedding_served.values()]

    def upstream_breakers(self) -> list[CircuitBreaker]:
        """The circuit breaker of every upstream model, then of every upstream host, for the
        metrics."""
        chat = [p.breaker for p in self._providers.values() if isinstance(p, UpstreamProvider)]
        embedding = [e.breaker for e in self._embedders.values() if isinstance(e, UpstreamEmbedder)]
        return chat + embedding + self._host_breakers

    def upstreams(self) -> dict[str, UpstreamProvider | UpstreamEmbedder]:
        """The upstream models by configured name (a configuration reload swaps their keys)."""
        models: dict[str, UpstreamProvider | UpstreamEmbedder] = {
            name: p for name, p in self._providers.items() if isinstance(p, UpstreamProvider)
        }
        for name, embedder in self._embedders.items():
            if isinstance(embedder, UpstreamEmbedder):
                models[name] = embedder
        return models

    @property
    def ready(self) -> bool:
        return all(provider.ready for provider in self._all_providers())

    async def start(self) -> None:
        for provider in self._all_providers():
            await provider.start()

    async def close(self) -> None:
        for provider in self._all_providers():
            await provider.close()
        if self._redis is not None:
            await self._redis.aclose()

    def _all_providers(self) -> list[ChatProvider | EmbeddingProvider]:
        return [*self._providers.values(), *self._embedders.values()]
