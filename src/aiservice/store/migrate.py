"""Apply Alembic migrations: at server start, and by `aiservice db upgrade`."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["database_url"] = url
    return config


def upgrade_database(url: str) -> None:
    """Bring the schema to the newest revision. Blocking: call it off the event loop
    (the migration environment runs its own loop)."""
    command.upgrade(alembic_config(url), "head")
