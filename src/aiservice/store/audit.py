"""The audit log's rows: added and listed, never changed or deleted (there is no path here
that would: append-only is this module's contract, and its tests check it)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select

from aiservice.store.database import Database
from aiservice.store.tables import AuditEntry


@dataclass(frozen=True, slots=True)
class AuditQuery:
    """Which entries to list, newest first: every filter given must match."""

    actor: str | None = None
    action: str | None = None
    target: str | None = None
    since: int | None = None  # unix seconds, inclusive
    until: int | None = None  # unix seconds, inclusive
    after: str | None = None  # an entry's id: the page starts past it (older ones)
    limit: int = 20


@dataclass(frozen=True, slots=True)
class AuditPage:
    rows: list[AuditEntry]
    has_more: bool


class UnknownAuditCursor(LookupError):
    """`after` names no audit entry."""


class AuditStore:
    def __init__(self, database: Database):
        self._sessions = database.sessions

    async def add(self, entry: AuditEntry) -> None:
        async with self._sessions.begin() as session:
            session.add(entry)

    async def list(self, query: AuditQuery) -> AuditPage:
        """One page, newest first; has_more from one row past the page, never a COUNT."""
        table = AuditEntry
        rows = select(table)
        for column, value in (
            (table.actor, query.actor),
            (table.action, query.action),
            (table.target, query.target),
        ):
            if value is not None:
                rows = rows.where(column == value)
        if query.since is not None:
            rows = rows.where(table.created_at >= query.since)
        if query.until is not None:
            rows = rows.where(table.created_at <= query.until)
        async with self._sessions() as session:
            if query.after is not None:
                cursor = await session.scalar(select(table.seq).where(table.id == query.after))
                if cursor is None:
                    raise UnknownAuditCursor(query.after)
                rows = rows.where(table.seq < cursor)
            found = list(
                await session.scalars(rows.order_by(table.seq.desc()).limit(query.limit + 1))
            )
        return AuditPage(found[: query.limit], has_more=len(found) > query.limit)
