"""The `aiservice` command: thin commands over the same services the API uses."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer
import uvicorn
from rich.console import Console
from sqlalchemy.engine import make_url

from aiservice.app import create_app
from aiservice.observability.logging import configure_logging
from aiservice.services.stored_completions import StoredCompletions
from aiservice.settings import ConfigError, Settings, load_settings
from aiservice.store.completions import CompletionStore
from aiservice.store.database import Database, database_url
from aiservice.store.migrate import upgrade_database

app = typer.Typer(
    help="aiservice: a self-hosted, OpenAI-compatible AI service.", no_args_is_help=True
)
err = Console(stderr=True)
out = Console()


@app.callback()
def main() -> None:
    """aiservice command line."""


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Interface to bind (default 127.0.0.1).")] = None,
    port: Annotated[
        int | None, typer.Option(min=0, max=65535, help="Port to listen on (default 5000).")
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option(help="TOML configuration file (default $AISERVICE_HOME/config.toml)."),
    ] = None,
) -> None:
    """Start the HTTP server."""
    overrides = {k: v for k, v in {"host": host, "port": port}.items() if v is not None}
    settings = _settings_or_exit(config)
    # Flags are applied after loading: passed to load_settings they were init arguments, which
    # AISERVICE_* variables override, so `--port 6000` lost to AISERVICE_PORT. Typer has
    # already checked their types and range.
    settings = settings.model_copy(update=overrides)
    configure_logging(settings.log_level)
    settings.home.mkdir(parents=True, exist_ok=True)
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        server_header=False,
    )


db = typer.Typer(help="Database maintenance.", no_args_is_help=True)
app.add_typer(db, name="db")


def _settings_or_exit(config: Path | None) -> Settings:
    # soft_wrap: Rich otherwise breaks lines at the terminal width (80 when piped), which
    # split "FILE: models[0].path: ..." across lines for anyone grepping the output.
    try:
        return load_settings(config)
    except ConfigError as exc:
        err.print(f"[red]Invalid configuration[/red]\n{exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None


ConfigOption = Annotated[
    Path | None,
    typer.Option(help="TOML configuration file (default $AISERVICE_HOME/config.toml)."),
]


@db.command("upgrade")
def db_upgrade(config: ConfigOption = None) -> None:
    """Apply pending database migrations (the server also does this at start)."""
    settings = _settings_or_exit(config)
    settings.home.mkdir(parents=True, exist_ok=True)
    url = database_url(settings)
    upgrade_database(url)
    out.print(f"Database is up to date: {make_url(url).render_as_string(hide_password=True)}")


@app.command()
def purge(config: ConfigOption = None) -> None:
    """Delete expired stored completions now (the server also does this periodically)."""
    settings = _settings_or_exit(config)
    settings.home.mkdir(parents=True, exist_ok=True)
    url = database_url(settings)
    upgrade_database(url)
    purged = asyncio.run(_purge(url, settings.retention_days))
    out.print(f"Purged {purged} expired stored completion(s).")


async def _purge(url: str, retention_days: int) -> int:
    database = Database(url)
    try:
        return await StoredCompletions(CompletionStore(database), retention_days).purge_expired()
    finally:
        await database.close()
