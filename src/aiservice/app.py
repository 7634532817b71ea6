"""create_app(settings): routers, middleware, error handlers; the lifespan loads the models."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from fastapi import FastAPI

from aiservice.api import (
    admin,
    audit,
    batches,
    budgets,
    chat_completions,
    completions,
    conversations,
    documents,
    email_routes,
    embeddings,
    files,
    health,
    metrics,
    models,
    moderations,
    privacy,
    responses,
    seed_routes,
    stored_completions,
    usage,
)
from aiservice.api.dashboard.routes import include_dashboard
from aiservice.api.error_handlers import install_error_handlers
from aiservice.api.hot_routes import HotRoutes, hot_routes
from aiservice.api.middleware import (
    METERED_ROUTES,
    BodySizeLimitMiddleware,
    RequestContextMiddleware,
)
from aiservice.api.openapi import install_openapi
from aiservice.services.config_reload import ConfigReload
from aiservice.services.runtime import ServiceRuntime
from aiservice.settings import Settings

# Every resource's router, in the order they are included (/metrics is added when enabled).
ROUTERS = (
    health.router,
    models.router,
    chat_completions.router,
    completions.router,
    embeddings.router,
    moderations.router,
    stored_completions.router,
    responses.router,
    conversations.router,
    files.router,
    batches.router,
    admin.router,
    budgets.router,
    privacy.router,
    audit.router,
    seed_routes.router,
    email_routes.router,
    documents.router,
    usage.router,
)


def create_app(
    settings: Settings,
    *,
    worker: bool = True,
    freeze_heap: bool = False,
    reload_settings: Callable[[], Settings] | None = None,
    worker_process: bool = False,
) -> FastAPI:
    """Build the ASGI app; nothing is loaded until the lifespan starts. With `worker`, the
    process also runs background responses; `freeze_heap` is for a process the app has to
    itself (`aiservice serve`): see ServiceRuntime.start. With `reload_settings` (the main
    thread's loop only), SIGHUP re-reads the configuration for new upstream keys.
    `worker_process`: a child of `serve --workers N` (cli/serve_workers.py): it leaves the
    migrations to its parent, and starts serving only once its models are loaded."""
    runtime = ServiceRuntime(settings)
    services = runtime.services
    reload = ConfigReload(services.registry, settings, reload_settings)
    lifespan = _lifespan(
        runtime,
        reload,
        worker=worker,
        freeze_heap=freeze_heap,
        migrate=not worker_process,
        wait_for_models=worker_process,
    )
    app = FastAPI(
        title="aiservice",
        version="0.1.0",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,  # install_openapi serves it: the admin API to admins only
    )
    app.state.services = services
    app.state.settings = settings
    install_error_handlers(app)
    for router in ROUTERS:
        app.include_router(router)
    include_dashboard(app)
    if settings.metrics_enabled:
        app.include_router(metrics.router)
    install_openapi(app)
    # Innermost: the model routes skip FastAPI's router, inside the two below.
    app.add_middleware(HotRoutes, routes=hot_routes(app, METERED_ROUTES))
    app.add_middleware(
        BodySizeLimitMiddleware,
        max_bytes=settings.max_request_bytes,
        # An upload's limit is the file's, plus room for the multipart framing.
        path_limits={
            "/v1/files": settings.max_file_bytes + 64 * 1024,
            documents.ANALYSES_PATH: documents.MAX_DOCUMENT_BYTES + 64 * 1024,
        },
    )
    # Outermost: every line has the request id, every model request reaches the ledger.
    app.add_middleware(
        RequestContextMiddleware,
        ledger=services.ledger,
        metrics=services.metrics if settings.metrics_enabled else None,
    )
    return app


def _lifespan(
    runtime: ServiceRuntime, reload: ConfigReload, **start: bool
) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    """Start the runtime (ServiceRuntime.start's options), stop it at the end."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        reload.install()  # first: SIGHUP's default would end the process
        # Models load in the background so /health answers at once and /ready tells when done
        # (except in a process of `serve --workers N`: see create_app).
        new_key = await runtime.start(**start)
        if new_key is not None:
            announce_master_key(new_key)
        try:
            yield
        finally:
            reload.remove()
            await runtime.close()

    return lifespan


def announce_master_key(new_key: str) -> None:
    # Shown once, on the console only: the server keeps nothing but its hash.
    print(
        f"\nNo AISERVICE_MASTER_KEY set; generated an admin API key:\n\n  {new_key}\n\n"
        "Store it now: it is not shown again.\n",
        file=sys.stderr,
        flush=True,
    )
