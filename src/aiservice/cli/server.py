"""Running the service and keeping its database: `serve`, `worker`, `purge` and `db upgrade`.

The web stack and the model runtime are imported inside the commands that need them: seconds
of imports that the account and database commands do without."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer
from sqlalchemy.engine import make_url

from aiservice.cli.common import (
    ConfigOption,
    out,
    proxy_options,
    settings_or_exit,
    with_database,
)
from aiservice.observability.logging import configure_logging
from aiservice.services.retention import RetentionPurge
from aiservice.settings import Settings, load_settings
from aiservice.store.database import database_url
from aiservice.store.migrate import upgrade_database

db_app = typer.Typer(help="Database maintenance.", no_args_is_help=True)


def serve(
    host: Annotated[str | None, typer.Option(help="Interface to bind (default 127.0.0.1).")] = None,
    port: Annotated[
        int | None, typer.Option(min=0, max=65535, help="Port to listen on (default 5000).")
    ] = None,
    config: ConfigOption = None,
    worker: Annotated[
        bool,
        typer.Option(
            "--worker/--no-worker",
            help="Run background responses in this process too (default) or leave them to "
            "`aiservice worker` processes. With --workers, in each server process.",
        ),
    ] = True,
    workers: Annotated[
        int,
        typer.Option(
            min=1,
            help="Server processes sharing the port, each with its own copy of the models "
            "(default 1: this process).",
        ),
    ] = 1,
) -> None:
    """Start the HTTP server."""
    overrides = {k: v for k, v in {"host": host, "port": port}.items() if v is not None}
    settings = settings_or_exit(config)
    # Flags are applied after loading: passed to load_settings they were init arguments, which
    # AISERVICE_* variables override, so `--port 6000` lost to AISERVICE_PORT. Typer has
    # already checked their types and range.
    settings = settings.model_copy(update=overrides)

    def reload_settings() -> Settings:  # on SIGHUP: the same file and flags, read anew
        return load_settings(config).model_copy(update=overrides)

    configure_logging(settings.log_level)
    settings.home.mkdir(parents=True, exist_ok=True)
    if workers > 1:
        from aiservice.cli.serve_workers import serve_with_workers

        serve_with_workers(
            settings, config=config, overrides=overrides, worker=worker, workers=workers
        )
        return
    import uvicorn

    from aiservice.app import create_app

    uvicorn.run(
        create_app(settings, worker=worker, freeze_heap=True, reload_settings=reload_settings),
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        server_header=False,
        **proxy_options(settings),
    )


def worker_command(
    config: ConfigOption = None,
    concurrency: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=64,
            help="Jobs of each kind this process runs at once (default: worker_concurrency).",
        ),
    ] = None,
) -> None:
    """Run background responses, batches and document analyses from the database until
    stopped (Ctrl-C or SIGTERM)."""
    import signal

    from aiservice.services.config_reload import ConfigReload
    from aiservice.services.runtime import ServiceRuntime

    overrides = {"worker_concurrency": concurrency} if concurrency is not None else {}
    settings = settings_or_exit(config).model_copy(update=overrides)
    configure_logging(settings.log_level)

    async def run() -> None:
        runtime = ServiceRuntime(settings)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        reload = ConfigReload(
            runtime.services.registry,
            settings,
            lambda: load_settings(config).model_copy(update=overrides),
        )
        reload.install()  # SIGHUP: new upstream keys, as for `serve`
        await runtime.start(master_key=False, wait_for_models=True, worker=True, freeze_heap=True)
        try:
            await stop.wait()
        finally:
            reload.remove()
            await runtime.close()  # hands running jobs back to the queue

    asyncio.run(run())


@db_app.command("upgrade")
def db_upgrade(config: ConfigOption = None) -> None:
    """Apply pending database migrations (the server also does this at start)."""
    settings = settings_or_exit(config)
    settings.home.mkdir(parents=True, exist_ok=True)
    url = database_url(settings)
    upgrade_database(url)
    out.print(f"Database is up to date: {make_url(url).render_as_string(hide_password=True)}")


def purge(config: ConfigOption = None) -> None:
    """Delete now what outlived its retention (`[retention]`) or its own expiry, and print
    how many rows of each kind. The workers also do this every `purge_interval_s`."""
    purged = with_database(
        config, lambda settings, database: RetentionPurge(database, settings, None).run_once()
    )
    if purged is None:
        out.print("Another process is purging this database now: nothing done here.")
        return
    out.print(f"Purged {sum(purged.values())} row(s) past their retention or expiry:")
    for kind, count in purged.items():
        out.print(f"  {kind}: {count}", highlight=False)
