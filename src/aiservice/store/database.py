"""Engines and sessions: SQLite in AISERVICE_HOME by default, PostgreSQL from DATABASE_URL."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine

from aiservice.settings import Settings
from aiservice.store.key_lookup import KeyLookup

SQLITE_FILE_NAME = "aiservice.db"


def database_url(settings: Settings) -> str:
    if settings.database_url:
        return settings.database_url
    return f"sqlite+aiosqlite:///{Path(settings.home) / SQLITE_FILE_NAME}"


def create_engine(url: str) -> AsyncEngine:
    """An async engine; SQLite connections get WAL and a busy timeout so that several
    processes (the server, the Python facade, the CLI) can share one file."""
    if make_url(url).get_backend_name() != "sqlite":
        return create_async_engine(url, pool_size=10, max_overflow=20, pool_pre_ping=True)
    engine = create_async_engine(url, connect_args={"timeout": 30})

    @event.listens_for(engine.sync_engine, "connect")
    def _sqlite_pragmas(connection, _record) -> None:  # type: ignore[no-untyped-def]
        cursor = connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    return engine


class Database:
    """One engine and its session factory for the life of the process, and the API-key
    lookup's own connection (store/key_lookup.py)."""

    def __init__(self, url: str):
        self.url = url
        self.engine = create_engine(url)
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)
        self.key_lookup = KeyLookup(url)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    async def close(self) -> None:
        await self.key_lookup.close()
        await self.engine.dispose()
