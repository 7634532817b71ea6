"""Database helpers of the erasure tests: many rows of one subject, counts, ledger totals."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from aiservice.store.database import Database
from aiservice.store.tables import UsageRecord
from aiservice.testing import subject_seed
from support import run_in_thread


def seed_subject(url: str, owner: str, key: str, value: str, completions: int, usage: int) -> None:
    async def write() -> None:
        database = Database(url)
        try:
            await subject_seed.seed_subject(database, owner, key, value, completions, usage)
        finally:
            await database.close()

    run_in_thread(write)


def count_where(url: str, table: Any, *conditions: Any) -> int:
    async def count() -> int:
        database = Database(url)
        try:
            async with database.sessions() as session:
                query = select(func.count()).select_from(table).where(*conditions)
                return int(await session.scalar(query) or 0)
        finally:
            await database.close()

    return run_in_thread(count)


def usage_totals(url: str) -> tuple[int, int, int, float]:
    async def totals() -> tuple[int, int, int, float]:
        database = Database(url)
        try:
            async with database.sessions() as session:
                row = (
                    await session.execute(
                        select(
                            func.count(),
                            func.sum(UsageRecord.input_tokens),
                            func.sum(UsageRecord.output_tokens),
                            func.sum(UsageRecord.cost_usd),
                        )
                    )
                ).one()
                return int(row[0]), int(row[1] or 0), int(row[2] or 0), round(row[3] or 0, 9)
        finally:
            await database.close()

    return run_in_thread(totals)
