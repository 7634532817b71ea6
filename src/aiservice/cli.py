"""The `aiservice` command: thin commands over the same services the API uses."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
import uvicorn
from rich.console import Console

from aiservice.app import create_app
from aiservice.observability.logging import configure_logging
from aiservice.settings import ConfigError, load_settings

app = typer.Typer(
    help="aiservice: a self-hosted, OpenAI-compatible AI service.", no_args_is_help=True
)
err = Console(stderr=True)


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
    try:
        settings = load_settings(config)
    except ConfigError as exc:
        # soft_wrap: Rich otherwise breaks lines at the terminal width (80 when piped), which
        # split "FILE: models[0].path: ..." across lines for anyone grepping the output.
        err.print(f"[red]Invalid configuration[/red]\n{exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
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
