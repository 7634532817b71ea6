"""The dashboard's jobs view: the newest background responses, batches and document
analyses (one owner's, or everyone's), and how many wait to be run."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from aiservice.store.database import Database
from aiservice.store.tables import DocumentAnalysis, StoredBatch, StoredResponse

QUEUED = ("queued", "validating", "in_progress", "finalizing")


class JobStore:
    def __init__(self, database: Database):
        self._sessions = database.sessions

    async def background_responses(self, owner: str | None, limit: int) -> list[Any]:
        table = StoredResponse
        statement = select(
            table.id, table.owner, table.model, table.status, table.created_at, table.attempts
        ).where(table.background.is_(True))
        return await self._newest(table, statement, owner, limit)

    async def batches(self, owner: str | None, limit: int) -> list[Any]:
        table = StoredBatch
        statement = select(
            table.seq,
            table.id,
            table.owner,
            table.endpoint,
            table.model,
            table.status,
            table.times,
            table.request_counts,
        )
        return await self._newest(table, statement, owner, limit)

    async def analyses(self, owner: str | None, limit: int) -> list[Any]:
        table = DocumentAnalysis
        statement = select(
            table.id,
            table.owner,
            table.name,
            table.model,
            table.status,
            table.stage,
            table.created_at,
            table.jobs,
        )
        return await self._newest(table, statement, owner, limit)

    async def waiting(self) -> dict[str, int]:
        """Jobs not yet finished, by kind: the queue's depth."""
        async with self._sessions() as session:
            counts = {}
            for name, table in (
                ("responses", StoredResponse),
                ("batches", StoredBatch),
                ("analyses", DocumentAnalysis),
            ):
                statement = select(func.count()).where(table.status.in_(QUEUED))
                if table is StoredResponse:
                    statement = statement.where(table.background.is_(True))
                counts[name] = int(await session.scalar(statement) or 0)
            return counts

    async def _newest(self, table: Any, statement: Any, owner: str | None, limit: int) -> list[Any]:
        if owner is not None:
            statement = statement.where(table.owner == owner)
        statement = statement.order_by(table.seq.desc()).limit(limit)
        async with self._sessions() as session:
            return list(await session.execute(statement))
