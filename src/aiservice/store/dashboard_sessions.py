"""The dashboard's sign-in sessions: added at sign-in, touched as pages are read, deleted at
sign-out or once idle or too old."""

from __future__ import annotations

from sqlalchemy import delete, or_, update

from aiservice.store.database import Database
from aiservice.store.tables import DashboardSession


class DashboardSessionStore:
    def __init__(self, database: Database):
        self._sessions = database.sessions

    async def add(self, row: DashboardSession) -> None:
        async with self._sessions.begin() as session:
            session.add(row)

    async def get(self, token_hash: str) -> DashboardSession | None:
        async with self._sessions() as session:
            return await session.get(DashboardSession, token_hash)

    async def touch(self, token_hash: str, now: float) -> None:
        async with self._sessions.begin() as session:
            await session.execute(
                update(DashboardSession)
                .where(DashboardSession.token_hash == token_hash)
                .values(last_seen_at=now)
            )

    async def delete(self, token_hash: str) -> None:
        async with self._sessions.begin() as session:
            await session.execute(
                delete(DashboardSession).where(DashboardSession.token_hash == token_hash)
            )

    async def delete_ended(self, idle_before: float, created_before: float) -> int:
        """Drop the sessions idle since before `idle_before` or begun before `created_before`."""
        async with self._sessions.begin() as session:
            result = await session.execute(
                delete(DashboardSession).where(
                    or_(
                        DashboardSession.last_seen_at < idle_before,
                        DashboardSession.created_at < created_before,
                    )
                )
            )
            return result.rowcount or 0
