"""create_app(settings): routers, middleware, error handlers; the lifespan loads the models."""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress

from fastapi import FastAPI

from aiservice.api import (
    admin,
    chat_completions,
    health,
    models,
    seed_routes,
    stored_completions,
)
from aiservice.api.deps import AppServices
from aiservice.api.error_handlers import install_error_handlers
from aiservice.api.middleware import BodySizeLimitMiddleware, RequestContextMiddleware
from aiservice.governance.accounts import Accounts
from aiservice.governance.login_throttle import LoginThrottle
from aiservice.governance.master_key import bootstrap_master_key
from aiservice.providers.registry import ModelRegistry
from aiservice.services.chat_completions import ChatCompletionService
from aiservice.services.stored_completions import StoredCompletions
from aiservice.settings import Settings
from aiservice.store.accounts import AccountStore
from aiservice.store.completions import CompletionStore
from aiservice.store.database import Database, database_url
from aiservice.store.migrate import upgrade_database

log = logging.getLogger(__name__)


def create_app(settings: Settings) -> FastAPI:
    """Build the ASGI app; nothing is loaded until the lifespan starts."""
    registry = ModelRegistry(settings)
    database = Database(database_url(settings))
    stored = StoredCompletions(CompletionStore(database), settings.retention_days)
    services = AppServices(
        registry=registry,
        database=database,
        chat_completions=ChatCompletionService(registry, stored),
        stored_completions=stored,
        accounts=Accounts(AccountStore(database)),
        login_throttle=LoginThrottle(),
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        settings.home.mkdir(parents=True, exist_ok=True)
        # Alembic runs its own event loop, so it gets a thread of its own.
        await asyncio.to_thread(upgrade_database, database.url)
        services.master_key, new_key = bootstrap_master_key(settings)
        if new_key is not None:
            # Shown once, on the console only: the server keeps nothing but its hash.
            print(
                f"\nNo AISERVICE_MASTER_KEY set; generated an admin API key:\n\n  {new_key}\n\n"
                "Store it now: it is not shown again.\n",
                file=sys.stderr,
                flush=True,
            )
        # Models load in the background so /health answers at once and /ready tells when done.
        background = [
            asyncio.create_task(_load_models(registry)),
            asyncio.create_task(_purge_periodically(stored, settings.purge_interval_s)),
        ]
        try:
            yield
        finally:
            for task in background:
                task.cancel()
            with suppress(asyncio.CancelledError):
                await asyncio.gather(*background)
            await registry.close()
            await database.close()

    app = FastAPI(
        title="aiservice",
        version="0.1.0",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    app.state.services = services
    app.state.settings = settings
    install_error_handlers(app)
    for router in (
        health.router,
        models.router,
        chat_completions.router,
        stored_completions.router,
        admin.router,
        seed_routes.router,
    ):
        app.include_router(router)
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.max_request_bytes)
    app.add_middleware(RequestContextMiddleware)  # outermost: every line has the request id
    return app


async def _load_models(registry: ModelRegistry) -> None:
    try:
        await registry.start()
        log.info("ready")
    except Exception as exc:
        log.error(
            "model loading failed", extra={"error_type": type(exc).__name__, "error": str(exc)}
        )


async def _purge_periodically(stored: StoredCompletions, interval_s: float) -> None:
    """Delete expired stored objects now and then; a failure is logged and retried later."""
    while True:
        try:
            purged = await stored.purge_expired()
            if purged:
                log.info("expired stored completions purged", extra={"purged": purged})
        except Exception as exc:
            log.error("purge failed", extra={"error_type": type(exc).__name__})
        await asyncio.sleep(interval_s)
