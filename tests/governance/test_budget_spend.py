"""The in-memory spend of a budget never misses a record, whatever the order in which records
are taken, written and re-read (budget_spend.py), against a database stand-in whose sums the
test controls."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from aiservice.governance.budget_spend import SpendTracker
from aiservice.store.tables import Budget

NOW = time.time()
BUDGET = Budget(id="budget_1", scope="user", subject_id="user_1", amount_usd=10.0, period="day")


class Written:
    """The ledger's table: what is written, and queries the test may hold back."""

    def __init__(self) -> None:
        self.total = 0.0
        self.hold: asyncio.Event | None = None

    async def spent(self, since: float, owner: str | None = None, key_id: str | None = None):
        value = self.total  # the query's snapshot is taken when it begins
        if self.hold is not None:
            await self.hold.wait()
        return value


def record(cost: float) -> dict[str, Any]:
    return {"owner": "user_1", "key_id": "key_1", "created_at": NOW, "cost_usd": cost}


class Ledger:
    """The ledger's side: records taken, and writes of them made under its write lock."""

    def __init__(self, written: Written) -> None:
        self.written = written
        self.unwritten: list[dict[str, Any]] = []
        self.lock = asyncio.Lock()

    def tracker(self) -> SpendTracker:
        return SpendTracker(self.written, lambda: self.unwritten, lambda: self.lock)  # type: ignore[arg-type]

    def take(self, tracker: SpendTracker, cost: float) -> dict[str, Any]:
        taken = record(cost)
        self.unwritten.append(taken)
        tracker.on_record(taken)
        return taken

    async def write(self) -> list[dict[str, Any]]:
        async with self.lock:
            batch, self.unwritten = self.unwritten, []
            self.written.total += sum(r["cost_usd"] for r in batch)
        return batch


async def test_a_record_counts_once_from_its_taking_to_after_its_write():
    ledger = Ledger(Written())
    tracker = ledger.tracker()
    assert await tracker.spent(BUDGET, NOW) == 0
    ledger.take(tracker, 1.0)
    assert await tracker.spent(BUDGET, NOW) == 1.0  # no I/O: counted as taken
    batch = await ledger.write()
    assert await tracker.spent(BUDGET, NOW) == 1.0  # written, not yet re-read: still once
    assert await tracker.written(batch, [BUDGET], NOW) == {BUDGET.id: 1.0}
    assert await tracker.spent(BUDGET, NOW) == 1.0


async def test_tracking_that_begins_while_a_record_is_unwritten_counts_it():
    written = Written()
    written.total = 3.0
    ledger = Ledger(written)
    ledger.unwritten.append(record(2.0))
    tracker = ledger.tracker()
    assert await tracker.spent(BUDGET, NOW) == 5.0
    batch = await ledger.write()
    await tracker.written(batch, [BUDGET], NOW)
    assert await tracker.spent(BUDGET, NOW) == 5.0


async def test_a_write_waits_for_a_read_under_way_so_no_record_is_counted_twice():
    ledger = Ledger(Written())
    tracker = ledger.tracker()
    await tracker.spent(BUDGET, NOW)
    ledger.take(tracker, 1.0)
    # A periodic refresh begins before the batch is written, and is slow to answer.
    held = ledger.written.hold = asyncio.Event()
    slow = asyncio.create_task(tracker.refresh([BUDGET], NOW))
    await asyncio.sleep(0)
    ledger.written.hold = None
    write = asyncio.create_task(ledger.write())
    await asyncio.sleep(0)
    assert not write.done()  # the write waits for the read
    # Meanwhile another record is taken: counted once, whenever the read ends.
    ledger.take(tracker, 2.0)
    assert await tracker.spent(BUDGET, NOW) == 3.0
    held.set()
    await slow
    assert await tracker.spent(BUDGET, NOW) == 3.0
    batch = await write
    assert await tracker.spent(BUDGET, NOW) == 3.0
    await tracker.written(batch, [BUDGET], NOW)
    assert await tracker.spent(BUDGET, NOW) == 3.0


async def test_records_of_an_earlier_period_do_not_count():
    ledger = Ledger(Written())
    tracker = ledger.tracker()
    await tracker.spent(BUDGET, NOW)
    yesterday = record(4.0) | {"created_at": NOW - 86_400}
    tracker.on_record(yesterday)
    assert await tracker.spent(BUDGET, NOW) == 0
