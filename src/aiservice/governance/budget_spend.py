"""What each budget has spent in its current period, kept in memory so that checking a budget
is usually no I/O.

A budget's spend is two numbers: `written`, the usage ledger's database sum for the period, and
`unwritten`, the cost of this process's records the ledger has taken but not written. Both are
read together while the ledger writes nothing (`paused`: its write lock), so no record is ever
in both or in neither; after that, each record taken is added to `unwritten` as it comes
(`on_record`). Reading again after each written batch (and now and then, for what other
processes spent) moves the batch from `unwritten` to `written`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractAsyncContextManager, contextmanager, suppress
from dataclasses import dataclass, field
from typing import Any

from aiservice.governance.budget_periods import period_start
from aiservice.store.tables import Budget
from aiservice.store.usage import UsageStore

log = logging.getLogger(__name__)

Record = dict[str, Any]  # a usage ledger record
Subject = tuple[str, str]  # ("user", user id) or ("key", key id)


def subjects_of(record: Record) -> list[Subject]:
    found = []
    if record.get("owner"):
        found.append(("user", record["owner"]))
    if record.get("key_id"):
        found.append(("key", record["key_id"]))
    return found


@dataclass(eq=False, slots=True)
class Spend:
    """One budget's spend in one period."""

    budget_id: str
    period_start: int
    written: float = 0.0
    unwritten: float = 0.0
    loaded: asyncio.Future[None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )

    @property
    def total(self) -> float:
        return self.written + self.unwritten

    def counts(self, record: Record) -> bool:
        return record["created_at"] >= self.period_start


class SpendTracker:
    def __init__(
        self,
        usage: UsageStore,
        unwritten: Callable[[], list[Record]] | None = None,
        paused: Callable[[], AbstractAsyncContextManager[Any]] | None = None,
    ):
        self._usage = usage
        self._unwritten = unwritten or list
        lock = asyncio.Lock()
        self._paused = paused or (lambda: lock)
        self._spends: dict[Subject, Spend] = {}  # the current period's, one budget per subject

    async def spent(self, budget: Budget, now: float) -> float:
        """USD the budget's subject has spent in the period holding `now`."""
        spend = self._current(budget, now)
        if spend is None:
            spend = self._start(budget, now)
        await asyncio.shield(spend.loaded)
        return spend.total

    def on_record(self, record: Record) -> None:
        """The ledger took a record: count it against the budgets of its user and key."""
        for subject in subjects_of(record):
            spend = self._spends.get(subject)
            if spend is not None and spend.counts(record):
                spend.unwritten += record["cost_usd"]

    async def written(
        self, batch: list[Record], budgets: Iterable[Budget], now: float
    ) -> dict[str, float]:
        """After `batch` was written: read the spends of `budgets` (its subjects') again.
        Returns each budget's written spend."""
        written: dict[str, float] = {}
        for budget in budgets:
            with _logged("budget spend refresh failed", budget):
                written[budget.id] = await self._refresh(budget, now)
        return written

    async def refresh(self, budgets: Iterable[Budget], now: float) -> None:
        """Query the spends already tracked again (what other processes spent)."""
        for budget in budgets:
            if self._current(budget, now) is not None:
                with _logged("budget spend refresh failed", budget):
                    await self._refresh(budget, now)

    def tracked(self) -> list[Subject]:
        return list(self._spends)

    def forget(self, subject: Subject) -> None:
        self._spends.pop(subject, None)

    def _current(self, budget: Budget, now: float) -> Spend | None:
        spend = self._spends.get((budget.scope, budget.subject_id))
        start = period_start(budget.period, now)
        if spend is None or spend.budget_id != budget.id or spend.period_start != start:
            return None
        return spend

    def _start(self, budget: Budget, now: float) -> Spend:
        """Track a budget from now on; its first read is under way when this returns."""
        subject = (budget.scope, budget.subject_id)
        spend = Spend(budget.id, period_start(budget.period, now))
        self._spends[subject] = spend

        async def load() -> None:
            try:
                await self._refresh(budget, now)
            except BaseException as exc:
                if not spend.loaded.done():
                    spend.loaded.set_exception(exc)
                raise

        task = asyncio.create_task(load())
        task.add_done_callback(_ignore_result)
        return spend

    async def _refresh(self, budget: Budget, now: float) -> float:
        """Read the budget's written and unwritten spend, as one consistent pair."""
        subject = (budget.scope, budget.subject_id)
        start = period_start(budget.period, now)
        try:
            async with self._paused():  # no batch is being written meanwhile
                written = await self._usage.spent(
                    start,
                    owner=budget.subject_id if budget.scope == "user" else None,
                    key_id=budget.subject_id if budget.scope == "key" else None,
                )
                unwritten = sum(
                    record["cost_usd"]
                    for record in self._unwritten()
                    if subject in subjects_of(record) and record["created_at"] >= start
                )
                spend = self._spends.get(subject)
                if (
                    spend is not None
                    and spend.budget_id == budget.id
                    and spend.period_start == start
                ):
                    spend.written, spend.unwritten = written, unwritten
                    if not spend.loaded.done():
                        spend.loaded.set_result(None)
        except Exception:
            # Start afresh at the next check.
            spend = self._spends.get(subject)
            if spend is not None and spend.budget_id == budget.id:
                del self._spends[subject]
            raise
        return written


@contextmanager
def _logged(message: str, budget: Budget) -> Iterator[None]:
    try:
        yield
    except Exception as exc:
        log.error(message, extra={"budget_id": budget.id, "error_type": type(exc).__name__})


def _ignore_result(task: asyncio.Task[None]) -> None:
    # A failed load is raised to whoever awaits the spend; nothing to log twice here.
    with suppress(asyncio.CancelledError):
        task.exception()
