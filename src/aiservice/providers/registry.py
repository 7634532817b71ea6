"""Which provider answers which model name: configured models first, then aliases."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from redis.asyncio import Redis

from aiservice.errors import ModelNotFound
from aiservice.providers.base import ChatProvider
from aiservice.providers.breaker import CircuitBreaker
from aiservice.providers.fallback import FallbackProvider
from aiservice.providers.local import LocalProvider
from aiservice.providers.upstream import UpstreamProvider
from aiservice.settings import ModelConfig, Settings

log = logging.getLogger(__name__)

# The provider of each kind a model's `provider` setting names.
_PROVIDER_OF_KIND: dict[str, Callable[[ModelConfig, Redis | None], ChatProvider]] = {
    "local": lambda model, _redis: LocalProvider(model),
    "openai": UpstreamProvider,
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


class ModelRegistry:
    """Resolves requested model names; built once from the settings."""

    def __init__(self, settings: Settings):
        created = int(time.time())
        # Shared by the upstreams' circuit breakers; connects on first use.
        self._redis = Redis.from_url(settings.redis_url) if settings.redis_url else None
        self._providers: dict[str, ChatProvider] = {
            model.name: _PROVIDER_OF_KIND[model.provider](model, self._redis)
            for model in settings.models
        }
        self._served: dict[str, ServedModel] = {}
        for model in settings.models:
            provider = self._providers[model.name]
            if model.fallbacks:
                provider = FallbackProvider(provider, self._fallbacks_of(model.fallbacks))
            self._served[model.name] = ServedModel(model.name, model.name, provider, created)
        for alias, target in settings.aliases.items():
            if alias in self._served:
                continue  # a configured model of that name wins over the alias
            if target not in self._providers:
                log.warning(
                    "alias ignored: unknown target", extra={"alias": alias, "target": target}
                )
                continue
            provider = self._served[target].provider  # with the target's fallbacks
            self._served[alias] = ServedModel(alias, target, provider, created)
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
        try:
            return self._served[name]
        except KeyError:
            raise ModelNotFound(name) from None

    def served_models(self) -> list[ServedModel]:
        return list(self._served.values())

    def upstream_breakers(self) -> list[CircuitBreaker]:
        """The circuit breaker of every upstream model, for the metrics."""
        return [p.breaker for p in self._providers.values() if isinstance(p, UpstreamProvider)]

    @property
    def ready(self) -> bool:
        return all(provider.ready for provider in self._providers.values())

    async def start(self) -> None:
        for provider in self._providers.values():
            await provider.start()

    async def close(self) -> None:
        for provider in self._providers.values():
            await provider.close()
        if self._redis is not None:
            await self._redis.aclose()
