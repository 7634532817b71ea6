"""SIGHUP: re-read the configuration (file and environment) and give the upstream models the
keys it names now, without a restart and without dropping a request.

Only the keys change: a request already sent keeps the headers it was sent with (a stream
started before goes on to its end), the next one carries the new key, and connection pools
stay warm. Any other change to the configuration is logged as needing a restart and otherwise
ignored, so that the running process never serves half of an old and half of a new one.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable

from aiservice.providers.registry import ModelRegistry
from aiservice.providers.upstream_model import read_api_key
from aiservice.settings import ConfigError, ModelConfig, Settings

log = logging.getLogger(__name__)


class ConfigReload:
    """Reloads the configuration of one serving process: on SIGHUP once installed."""

    def __init__(
        self, registry: ModelRegistry, running: Settings, load: Callable[[], Settings] | None
    ) -> None:
        self._registry = registry
        self._running = running  # what the process was started with: the rest stays so
        self._load = load  # None: never reloads (an app on a thread of a test: no signals)
        self._loop: asyncio.AbstractEventLoop | None = None

    def install(self) -> None:
        """Reload on SIGHUP (its default would end the process). On the running loop."""
        if self._load is None:
            return
        self._loop = asyncio.get_running_loop()
        self._loop.add_signal_handler(signal.SIGHUP, self.reload)

    def remove(self) -> None:
        if self._loop is not None:
            self._loop.remove_signal_handler(signal.SIGHUP)
            self._loop = None

    def reload(self) -> list[str]:
        """Swap the upstream keys; the names of the models whose key changed."""
        assert self._load is not None, "a ConfigReload without a loader never reloads"
        try:
            fresh = self._load()
        except ConfigError as exc:
            log.error(
                "configuration reload failed; the running configuration is kept",
                extra={"error": str(exc)},
            )
            return []
        changed = self._swap_keys({model.name: model for model in fresh.models})
        needs_restart = changed_fields(self._running, fresh)
        if needs_restart:
            log.warning(
                "configuration changes need a restart; ignored until then",
                extra={"fields": needs_restart},
            )
        # Names of models and fields only: never a key.
        log.info("configuration reloaded", extra={"upstream_keys_changed": changed})
        return changed

    def _swap_keys(self, configured: dict[str, ModelConfig]) -> list[str]:
        changed = []
        for name, upstream in self._registry.upstreams().items():
            model = configured.get(name)
            if model is None or model.provider != "openai":
                continue  # gone or turned local: a restart's business (logged as such)
            try:
                key = read_api_key(model)
            except OSError as exc:
                log.error(
                    "upstream key file unreadable; its current key is kept",
                    extra={"model": name, "path": str(model.api_key_file), "error": str(exc)},
                )
                continue
            if upstream.use_api_key(key):
                changed.append(name)
        return changed


def changed_fields(running: Settings, fresh: Settings) -> list[str]:
    """The settings (top-level names) that differ, the upstream keys' own fields aside."""
    changed = []
    for name in type(running).model_fields:
        before, after = getattr(running, name), getattr(fresh, name)
        if name == "models":
            before, after = [_keyless(m) for m in before], [_keyless(m) for m in after]
        if before != after:
            changed.append(name)
    return changed


def _keyless(model: ModelConfig) -> ModelConfig:
    return model.model_copy(update={"api_key_env": None, "api_key_file": None})
