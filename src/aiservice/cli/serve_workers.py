"""`aiservice serve --workers N`: N server processes on one port, under uvicorn's supervisor.

The parent binds the port, does once what must not happen N times (the database migrations,
the master key's bootstrap: a generated key is generated and shown once), then starts the
children, each of which loads its own models and serves from the shared socket. The children
are spawned (a fresh interpreter each) and build their settings exactly as the parent did:
the configuration file and the flags reach them in one environment variable, the rest of the
environment is inherited. Their Prometheus metrics are shared through files in a directory
the parent creates, and removes when it ends (observability/metrics.py).

Signals to the parent (uvicorn's): SIGTERM or SIGINT stops every child gracefully, then the
parent; SIGHUP replaces the children one at a time, each new one serving before the old one
stops, with the configuration read anew; SIGTTIN / SIGTTOU add or remove a child. A child that
dies is replaced.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiservice.governance.master_key import bootstrap_master_key
from aiservice.observability.logging import configure_logging
from aiservice.observability.metrics import MULTIPROCESS_DIR_VARIABLE
from aiservice.settings import Settings, load_settings
from aiservice.store.database import database_url
from aiservice.store.migrate import upgrade_database

if TYPE_CHECKING:
    from fastapi import FastAPI

# What a child needs to build the parent's settings: {"config": path, "overrides": {...},
# "worker": bool}.
OPTIONS_VARIABLE = "AISERVICE_SERVE_OPTIONS"
APP_FACTORY = "aiservice.cli.serve_workers:worker_process_app"
# How long a new child (SIGHUP) may take to load its models before the parent gives up on it
# and keeps the old one: uvicorn's default, 5 s, is less than a start on a busy machine. It is
# also how long the parent waits for any child to answer its health check, which it does one
# child at a time, signals included: a child that dies while asked holds the parent that long.
HEALTHCHECK_TIMEOUT_S = 30


def serve_with_workers(
    settings: Settings,
    *,
    config: Path | None,
    overrides: dict[str, Any],
    worker: bool,
    workers: int,
) -> None:
    """Run `workers` server processes until stopped (the parent's part)."""
    import uvicorn

    from aiservice.app import announce_master_key
    from aiservice.cli.common import proxy_options

    upgrade_database(database_url(settings))  # the children do not: SQLite would race
    _, new_key = bootstrap_master_key(settings)  # the children read the hash it kept
    if new_key is not None:
        announce_master_key(new_key)
    options = {
        "config": str(config.resolve()) if config is not None else None,
        "overrides": overrides,
        "worker": worker,
    }
    os.environ[OPTIONS_VARIABLE] = json.dumps(options)
    # A fresh directory for this server's metrics, whatever the environment said: the files
    # of another server (or an earlier run) would be added to its totals.
    metrics_dir = tempfile.mkdtemp(prefix="aiservice-metrics-")
    os.environ[MULTIPROCESS_DIR_VARIABLE] = metrics_dir
    try:
        uvicorn.run(
            APP_FACTORY,
            factory=True,
            workers=workers,
            host=settings.host,
            port=settings.port,
            log_config=None,
            access_log=False,
            server_header=False,
            timeout_worker_healthcheck=HEALTHCHECK_TIMEOUT_S,
            **proxy_options(settings),
        )
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)


def worker_process_app() -> FastAPI:
    """The app of one child process (uvicorn calls this factory in each)."""
    from aiservice.app import create_app

    options = json.loads(os.environ[OPTIONS_VARIABLE])
    config = Path(options["config"]) if options["config"] is not None else None
    overrides: dict[str, Any] = options["overrides"]

    def reload_settings() -> Settings:  # as the parent built them; on SIGHUP to this child too
        return load_settings(config).model_copy(update=overrides)

    settings = reload_settings()
    configure_logging(settings.log_level)
    return create_app(
        settings,
        worker=options["worker"],
        freeze_heap=True,
        reload_settings=reload_settings,
        worker_process=True,
    )
