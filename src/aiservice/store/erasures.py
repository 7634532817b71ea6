"""Privacy erasures as durable jobs: created once per running subject, claimed under a lease,
advanced one committed batch at a time (the rows and the job's counts in one transaction),
completed by dropping the subject."""

from __future__ import annotations

import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy import null, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from aiservice.store.database import Database
from aiservice.store.subjects import Subject
from aiservice.store.tables import PrivacyErasure

IN_PROGRESS, COMPLETED = "in_progress", "completed"


class ErasureStore:
    def __init__(self, database: Database):
        self._sessions = database.sessions

    async def start(self, subject: Subject, actor: str, request_id: str | None) -> PrivacyErasure:
        """The running erasure of this subject, or a new one: asking twice erases once."""
        async with self._sessions.begin() as session:
            running = await session.scalar(
                select(PrivacyErasure).where(
                    PrivacyErasure.subject_digest == subject.digest,
                    PrivacyErasure.status == IN_PROGRESS,
                )
            )
            if running is not None:
                return running
            row = PrivacyErasure(
                id="erasure_" + secrets.token_hex(12),
                status=IN_PROGRESS,
                created_at=int(time.time()),
                subject=subject.as_json(),
                subject_digest=subject.digest,
                pseudonym="anon_" + secrets.token_hex(12),
                deleted={},
                actor=actor,
                request_id=request_id,
                attempts=0,
            )
            session.add(row)
            return row

    async def get(self, erasure_id: str) -> PrivacyErasure | None:
        async with self._sessions() as session:
            return await session.scalar(
                select(PrivacyErasure).where(PrivacyErasure.id == erasure_id)
            )

    async def claim(
        self, worker_id: str, lease_s: float, erasure_id: str | None = None
    ) -> PrivacyErasure | None:
        """Take a running erasure nobody holds (or whose holder stopped renewing)."""
        now = time.time()
        free = or_(PrivacyErasure.worker_id.is_(None), PrivacyErasure.lease_expires_at < now)
        query = select(PrivacyErasure.id).where(PrivacyErasure.status == IN_PROGRESS, free)
        if erasure_id is not None:
            query = query.where(PrivacyErasure.id == erasure_id)
        async with self._sessions.begin() as session:
            for candidate in list(
                await session.scalars(query.order_by(PrivacyErasure.seq).limit(5))
            ):
                taken = await session.execute(
                    update(PrivacyErasure)
                    .where(
                        PrivacyErasure.id == candidate, PrivacyErasure.status == IN_PROGRESS, free
                    )
                    .values(
                        worker_id=worker_id,
                        lease_expires_at=now + lease_s,
                        attempts=PrivacyErasure.attempts + 1,
                    )
                )
                if taken.rowcount:
                    return await session.scalar(
                        select(PrivacyErasure).where(PrivacyErasure.id == candidate)
                    )
        return None

    async def advance(
        self,
        erasure_id: str,
        worker_id: str,
        lease_s: float,
        work: Callable[[AsyncSession], Awaitable[dict[str, int]]],
    ) -> dict[str, int] | None:
        """Run one batch of `work` and add its counts to the job's, in one transaction, while
        this worker still holds the job (its lease renewed); None if it lost it."""
        async with self._sessions.begin() as session:
            row = await session.scalar(
                select(PrivacyErasure)
                .where(PrivacyErasure.id == erasure_id, PrivacyErasure.worker_id == worker_id)
                .with_for_update()
            )
            if row is None or row.status != IN_PROGRESS:
                return None
            counts = await work(session)
            if counts:
                totals = dict(row.deleted)
                for name, count in counts.items():
                    totals[name] = totals.get(name, 0) + count
                row.deleted = totals
            row.lease_expires_at = time.time() + lease_s
            return counts

    async def complete(self, erasure_id: str, worker_id: str) -> PrivacyErasure | None:
        async with self._sessions.begin() as session:
            done: dict[str, Any] = {
                "status": COMPLETED,
                "completed_at": int(time.time()),
                "subject": null(),  # SQL NULL, not JSON null
                "subject_digest": None,
                "worker_id": None,
                "lease_expires_at": None,
            }
            await session.execute(
                update(PrivacyErasure)
                .where(PrivacyErasure.id == erasure_id, PrivacyErasure.worker_id == worker_id)
                .values(done)
            )
        return await self.get(erasure_id)
