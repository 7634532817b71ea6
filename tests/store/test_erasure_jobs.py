"""Erasure jobs on each backend: one running job per subject, a job abandoned by a worker
that died mid-way taken up by the worker loop of another once its lease is over, and counts
that match what is gone at every step."""

from __future__ import annotations

import asyncio

from sqlalchemy import func, select

from aiservice.governance.audit import AuditLog
from aiservice.services.privacy_erase import ErasureSettings, PrivacyErasures
from aiservice.services.privacy_subject import PrivacyRequest, SubjectSpec
from aiservice.store.accounts import AccountStore
from aiservice.store.audit import AuditStore
from aiservice.store.database import Database
from aiservice.store.erasures import ErasureStore
from aiservice.store.subject_rows import CONTENT_KINDS, Cursor, delete_batch
from aiservice.store.subjects import Subject
from aiservice.store.tables import StoredCompletion, UsageRecord
from aiservice.testing.subject_seed import seed_subject

REQUEST = PrivacyRequest(subject=SubjectSpec(metadata={"user_id": "42"}))


def erasures(database: Database, lease_s: float = 0.5) -> PrivacyErasures:
    settings = ErasureSettings(
        subject_keys=["user_id"], batch_size=25, lease_s=lease_s, poll_s=0.05
    )
    return PrivacyErasures(
        ErasureStore(database), AccountStore(database), AuditLog(AuditStore(database)), settings
    )


async def count(database: Database, table: type) -> int:
    async with database.sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(table)) or 0)


async def test_a_subject_has_one_running_erasure(store_url: str) -> None:
    database = Database(store_url)
    try:
        first = await erasures(database).start(REQUEST, None)
        again = await erasures(database).start(REQUEST, None)
        other = await erasures(database).start(
            PrivacyRequest(subject=SubjectSpec(metadata={"user_id": "43"})), None
        )
        assert again["id"] == first["id"] and other["id"] != first["id"]
    finally:
        await database.close()


async def test_an_abandoned_erasure_is_taken_up_by_a_worker_and_counted_once(
    store_url: str,
) -> None:
    database = Database(store_url)
    try:
        await seed_subject(database, "user_a", "user_id", "42", completions=120, usage=80)
        await seed_subject(database, "user_a", "user_id", "7", completions=5, usage=5)
        dead = erasures(database)
        started = await dead.start(REQUEST, None)
        # The first worker claims the job, deletes two batches, and dies (its lease runs out).
        row = await dead.store.claim("dead-worker", 0.5, started["id"])
        assert row is not None and row.subject is not None
        subject, cursor = Subject.from_json(row.subject), Cursor()
        completions = CONTENT_KINDS[1]
        for _ in range(2):
            await dead.store.advance(
                row.id, "dead-worker", 0.5,
                lambda session: delete_batch(session, completions, subject, 25, cursor),
            )  # fmt: skip
        halfway = await dead.store.get(row.id)
        assert halfway is not None and halfway.deleted == {"chat.completion": 50}
        assert await count(database, StoredCompletion) == 125 - 50

        survivor = erasures(database)
        loop = asyncio.create_task(survivor.run())
        try:

            async def completed() -> None:
                while (await survivor.get(row.id)).status != "completed":  # type: ignore[union-attr]
                    await asyncio.sleep(0.05)

            await asyncio.wait_for(completed(), 30)
        finally:
            loop.cancel()
        done = await survivor.get(row.id)
        assert done is not None and done.attempts == 2
        assert done.deleted == {"chat.completion": 120, "usage.record": 80}
        assert done.subject is None and done.subject_digest is None
        assert await count(database, StoredCompletion) == 5
        assert await count(database, UsageRecord) == 85  # kept, under the pseudonym
    finally:
        await database.close()
