"""Queries on budgets and their alerts."""

from __future__ import annotations

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError

from aiservice.store.database import Database
from aiservice.store.tables import Budget, BudgetAlert


class BudgetStore:
    def __init__(self, database: Database):
        self._sessions = database.sessions

    async def replace(self, budget: Budget) -> None:
        """Store `budget` in place of any other of the same user or key (one per subject)."""
        for attempt in range(2):
            try:
                async with self._sessions.begin() as session:
                    await session.execute(
                        delete(Budget).where(
                            Budget.scope == budget.scope, Budget.subject_id == budget.subject_id
                        )
                    )
                    session.add(budget)
                return
            except IntegrityError:
                # Another process stored one for the subject between our delete and insert:
                # the last writer wins, as it would have one moment later.
                if attempt:
                    raise

    async def budgets(self) -> list[Budget]:
        async with self._sessions() as session:
            statement = select(Budget).order_by(Budget.created_at, Budget.id)
            return list(await session.scalars(statement))

    async def delete(self, budget_id: str) -> bool:
        async with self._sessions.begin() as session:
            result = await session.execute(delete(Budget).where(Budget.id == budget_id))
            return result.rowcount > 0

    async def add_alert(self, alert: BudgetAlert) -> bool:
        """Insert the alert; False if this threshold of this period was already raised (by
        this process or another: the unique index decides, so each is raised once)."""
        try:
            async with self._sessions.begin() as session:
                session.add(alert)
            return True
        except IntegrityError:
            return False

    async def set_delivered(self, alert_id: str) -> None:
        async with self._sessions.begin() as session:
            await session.execute(
                update(BudgetAlert).where(BudgetAlert.id == alert_id).values(delivered=True)
            )

    async def alerts(self, limit: int = 100) -> list[BudgetAlert]:
        """The latest alerts, newest first."""
        async with self._sessions() as session:
            statement = select(BudgetAlert).order_by(BudgetAlert.seq.desc()).limit(limit)
            return list(await session.scalars(statement))
