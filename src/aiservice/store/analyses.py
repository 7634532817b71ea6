"""Queries on document analyses, and the job queue they double as: a worker claims a queued
or running analysis under a lease to start its next stage (see services/analysis_driver.py);
every write after checks that it still holds it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, insert, or_, select, update

from aiservice.store.database import Database
from aiservice.store.tables import DocumentAnalysis

RUNNING = ("queued", "in_progress")


@dataclass(frozen=True, slots=True)
class NewAnalysis:
    id: str
    owner: str
    principal: dict[str, Any]
    model: str
    name: str
    created_at: int
    chunks: list[str]
    metadata: dict[str, str] | None


class AnalysisStore:
    def __init__(self, database: Database):
        self._sessions = database.sessions

    async def insert(self, new: NewAnalysis) -> DocumentAnalysis:
        async with self._sessions.begin() as session:
            return await session.scalar(
                insert(DocumentAnalysis)
                .values(
                    id=new.id,
                    owner=new.owner,
                    principal=new.principal,
                    model=new.model,
                    name=new.name,
                    status="queued",
                    created_at=new.created_at,
                    chunks=new.chunks,
                    jobs=[],
                    metadata_=new.metadata,
                    attempts=0,
                )
                .returning(DocumentAnalysis)
            )

    async def get(self, owner: str, analysis_id: str) -> DocumentAnalysis | None:
        async with self._sessions() as session:
            return await session.scalar(
                select(DocumentAnalysis).where(
                    DocumentAnalysis.owner == owner, DocumentAnalysis.id == analysis_id
                )
            )

    async def claim(self, worker_id: str, now: float, lease_s: float) -> DocumentAnalysis | None:
        """Take the oldest running analysis no worker holds (or whose lease ran out)."""
        table = DocumentAnalysis
        free = and_(
            table.status.in_(RUNNING),
            or_(table.worker_id.is_(None), table.lease_expires_at < now),
        )
        oldest = (
            select(table.seq)
            .where(free)
            .order_by(table.lease_expires_at.is_not(None), table.lease_expires_at, table.seq)
            .limit(1)
            .with_for_update(skip_locked=True)
            .scalar_subquery()
        )
        async with self._sessions.begin() as session:
            return await session.scalar(
                update(table)
                .where(table.seq == oldest, free)
                .values(
                    worker_id=worker_id,
                    lease_expires_at=now + lease_s,
                    attempts=table.attempts + 1,
                )
                .returning(table)
            )

    async def update_held(
        self, analysis_id: str, worker_id: str, *, next_look_at: float | None, **values: Any
    ) -> bool:
        """Write `values` on an analysis this worker holds. With `next_look_at`, any worker may
        look at it again from then on (the lease runs until then); without, it is let go."""
        held = (
            DocumentAnalysis.id == analysis_id,
            DocumentAnalysis.worker_id == worker_id,
            DocumentAnalysis.status.in_(RUNNING),
        )
        lease = (
            {"lease_expires_at": next_look_at}
            if next_look_at is not None
            else {"worker_id": None, "lease_expires_at": None}
        )
        async with self._sessions.begin() as session:
            result = await session.execute(
                update(DocumentAnalysis).where(*held).values(**values, **lease)
            )
            return result.rowcount > 0

    async def cancel(self, owner: str, analysis_id: str, now: int) -> DocumentAnalysis | None:
        """Mark a running analysis cancelled; the analysis as it now is (None: not found)."""
        async with self._sessions.begin() as session:
            await session.execute(
                update(DocumentAnalysis)
                .where(
                    DocumentAnalysis.owner == owner,
                    DocumentAnalysis.id == analysis_id,
                    DocumentAnalysis.status.in_(RUNNING),
                )
                .values(status="cancelled", finished_at=now, worker_id=None, lease_expires_at=None)
            )
            return await session.scalar(
                select(DocumentAnalysis).where(
                    DocumentAnalysis.owner == owner, DocumentAnalysis.id == analysis_id
                )
            )
