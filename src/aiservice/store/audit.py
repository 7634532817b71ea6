"""The audit log's rows: added, listed, never changed or deleted."""

from __future__ import annotations

from sqlalchemy import select

from aiservice.store.database import Database
from aiservice.store.tables import AuditEntry


class AuditStore:
    def __init__(self, database: Database):
        self._sessions = database.sessions

    async def add(self, entry: AuditEntry) -> None:
        async with self._sessions.begin() as session:
            session.add(entry)

    async def latest(self, limit: int = 20) -> list[AuditEntry]:
        async with self._sessions() as session:
            query = select(AuditEntry).order_by(AuditEntry.seq.desc()).limit(limit)
            return list(await session.scalars(query))
