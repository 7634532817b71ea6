"""Budgets per user and per key: set, list and delete them, refuse a caller whose budget is
spent (429 budget_exceeded), and raise alerts at 50, 80 and 100 %.

`check` runs before any model work and is usually no I/O: the budget list is cached in the
process (changed at once by this process's own edits, reloaded every `refresh_s` for other
processes' and the CLI's, off the request path), and each budget's spend is tracked in memory
(budget_spend.py). A caller with no budget costs two dictionary look-ups.

Overshoot: a request is checked when it begins and its cost counted when it ends, so requests
already in flight when a budget is reached still finish and are charged. In one process that is
the whole overshoot; with several, each also sees the others' spending only once it is written
(`ledger_flush_s`) and re-read (after this process's next batch for the subject, or at the
next refresh).
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import math
import secrets
import time
from typing import Any

from aiservice.errors import BudgetExceeded, InvalidRequest, NotFound
from aiservice.governance.accounts import Principal, normalise_email
from aiservice.governance.audit import AuditLog
from aiservice.governance.budget_alerts import BudgetAlerts, alert_view, reached
from aiservice.governance.budget_periods import PERIODS, iso, period_start, resets_at
from aiservice.governance.budget_spend import Record, SpendTracker, Subject, subjects_of
from aiservice.metering.ledger import UsageLedger
from aiservice.settings import Settings
from aiservice.store.accounts import AccountStore
from aiservice.store.budgets import BudgetStore
from aiservice.store.database import Database
from aiservice.store.tables import Budget
from aiservice.store.usage import UsageStore

log = logging.getLogger(__name__)


class Budgets:
    """The budgets of one process; with a ledger, it also enforces them and raises alerts."""

    def __init__(
        self,
        store: BudgetStore,
        accounts: AccountStore,
        usage: UsageStore,
        *,
        ledger: UsageLedger | None = None,
        alerts: BudgetAlerts | None = None,
        refresh_s: float = 5.0,
        audit: AuditLog | None = None,  # where changes to budgets are recorded
    ):
        self._store = store
        self._audit = audit
        self._accounts = accounts
        self._alerts = alerts or BudgetAlerts(store)
        self._refresh_s = refresh_s
        self._by_subject: dict[Subject, Budget] = {}
        self._loaded_at: float | None = None  # monotonic
        self._reloading: asyncio.Task[None] | None = None
        self._edits = 0  # this process's changes to the list, so a reload does not undo one
        self.spend = (
            SpendTracker(usage, lambda: ledger.unwritten, ledger.writes_paused)
            if ledger is not None
            else SpendTracker(usage)
        )
        if ledger is not None:
            ledger.on_record.append(self.spend.on_record)
            ledger.on_written.append(self._on_written)

    # -- enforcement ---------------------------------------------------------------------

    async def check(self, principal: Principal) -> None:
        """Raise BudgetExceeded if a (non-soft) budget of the caller's user or key is spent."""
        await self._fresh()
        if principal.budget_ids and not self._knows(principal):
            await self._reload()  # made elsewhere since the last reload (the CLI, say)
        for subject in (("user", principal.owner), ("key", principal.key_id or "")):
            budget = self._by_subject.get(subject)
            if budget is None or budget.soft:
                continue
            now = time.time()
            spent = await self.spend.spent(budget, now)
            if reached(spent, budget.amount_usd):
                raise _exceeded(budget, spent, principal, now)

    def _knows(self, principal: Principal) -> bool:
        """Whether every budget the key lookup found for the caller is in this process's list."""
        known = {
            budget.id
            for subject in (("user", principal.owner), ("key", principal.key_id or ""))
            if (budget := self._by_subject.get(subject)) is not None
        }
        return all(budget_id in known for budget_id in principal.budget_ids)

    async def _fresh(self) -> None:
        if self._loaded_at is None:
            await self._reload()  # the first check waits; later ones never do
        elif time.monotonic() - self._loaded_at > self._refresh_s and self._reloading is None:
            # A clean context: the reload belongs to no request (no request id, no meter).
            self._reloading = asyncio.create_task(
                self._reload_logged(), context=contextvars.Context()
            )

    async def _reload(self) -> None:
        edits = self._edits
        budgets = await self._store.budgets()
        if edits != self._edits:
            return  # this process changed a budget meanwhile: the list read may predate it
        self._by_subject = {(b.scope, b.subject_id): b for b in budgets}
        self._loaded_at = time.monotonic()
        for stale in set(self.spend.tracked()) - set(self._by_subject):
            self.spend.forget(stale)
        await self.spend.refresh(budgets, time.time())  # what other processes spent

    async def _reload_logged(self) -> None:
        try:
            await self._reload()
        except Exception as exc:
            log.error("budget reload failed", extra={"error_type": type(exc).__name__})
        finally:
            self._reloading = None

    async def _on_written(self, batch: list[Record]) -> None:
        """After a ledger batch is in the database: re-read its subjects' spends and raise the
        alerts they have reached."""
        if self._loaded_at is None:
            await self._reload()
        touched = {
            subject: self._by_subject[subject]
            for record in batch
            for subject in subjects_of(record)
            if subject in self._by_subject
        }
        now = time.time()
        written = await self.spend.written(batch, touched.values(), now)
        for budget in touched.values():
            if budget.id in written:
                await self._alerts.evaluate(budget, written[budget.id], now)

    async def close(self) -> None:
        if self._reloading is not None:
            self._reloading.cancel()
        await self._alerts.close()

    # -- administration ------------------------------------------------------------------

    async def put(
        self,
        *,
        user: str | None = None,
        key: str | None = None,
        amount_usd: float,
        period: str = "month",
        soft: bool = False,
    ) -> Budget:
        """Create the budget of a user (e-mail or id) or a key (id), replacing any it had."""
        if (user is None) == (key is None):
            raise InvalidRequest(
                "Give either `user` (an e-mail or user id) or `key` (a key id).", param="user"
            )
        if not math.isfinite(amount_usd) or amount_usd <= 0:
            raise InvalidRequest("amount_usd must be a positive number.", param="amount_usd")
        if period not in PERIODS:
            raise InvalidRequest(
                f"period must be one of {', '.join(PERIODS)}, not {period!r}.", param="period"
            )
        scope, subject_id = await self._subject(user, key)
        budget = Budget(
            id="budget_" + secrets.token_hex(12),
            scope=scope,
            subject_id=subject_id,
            amount_usd=float(amount_usd),
            period=period,
            soft=soft,
            created_at=int(time.time()),
        )
        await self._store.replace(budget)
        self._edits += 1
        self._by_subject[(scope, subject_id)] = budget
        await self._record("budget.set", budget)
        return budget

    async def _subject(self, user: str | None, key: str | None) -> Subject:
        if key is not None:
            if await self._accounts.key_by_id(key.strip()) is None:
                raise NotFound(f"No key {key}.", param="key")
            return ("key", key.strip())
        assert user is not None
        found = await self._accounts.user_by_id(user.strip())
        if found is None:
            found = await self._accounts.user_by_email(normalise_email(user))
        if found is None:
            raise NotFound(f"No user {user}.", param="user")
        return ("user", found.id)

    async def budgets(self) -> list[Budget]:
        return await self._store.budgets()

    async def copy_key_budget(self, from_key: str, to_key: str) -> Budget | None:
        """Give `to_key` (a rotated key's successor) the budget `from_key` has, if any. The
        copy's spend starts at zero: each key's spending is its own."""
        budget = next(
            (b for b in await self.budgets() if (b.scope, b.subject_id) == ("key", from_key)),
            None,
        )
        if budget is None:
            return None
        return await self.put(
            key=to_key, amount_usd=budget.amount_usd, period=budget.period, soft=budget.soft
        )

    async def delete(self, budget_id: str) -> Budget:
        budgets = {budget.id: budget for budget in await self.budgets()}
        budget = budgets.get(budget_id)
        if budget is None or not await self._store.delete(budget_id):
            raise NotFound(f"No budget {budget_id}.")
        self._edits += 1
        self._by_subject.pop((budget.scope, budget.subject_id), None)
        self.spend.forget((budget.scope, budget.subject_id))
        await self._record("budget.delete", budget)
        return budget

    async def _record(self, action: str, budget: Budget) -> None:
        if self._audit is None:
            return
        details = {
            "scope": budget.scope,
            "subject_id": budget.subject_id,
            "amount_usd": budget.amount_usd,
            "period": budget.period,
            "soft": budget.soft,
        }
        await self._audit.record(action, budget.id, details)

    async def view(self, budget: Budget) -> dict[str, Any]:
        """A budget as the admin API shows it, with what it has spent this period."""
        now = time.time()
        return {
            "object": "budget",
            "id": budget.id,
            "scope": budget.scope,
            "subject_id": budget.subject_id,
            "amount_usd": budget.amount_usd,
            "period": budget.period,
            "soft": budget.soft,
            "created_at": budget.created_at,
            "spent_usd": round(await self.spend.spent(budget, now), 10),
            "period_start": period_start(budget.period, now),
            "resets_at": resets_at(budget.period, now),
        }

    async def alerts(self, limit: int = 100) -> list[dict[str, Any]]:
        return [alert_view(alert) for alert in await self._store.alerts(limit)]


def build_budgets(
    settings: Settings,
    database: Database,
    ledger: UsageLedger | None,
    audit: AuditLog | None = None,
) -> Budgets:
    """The budgets of a process on `database`; enforced and alerted on with a `ledger`."""
    store = BudgetStore(database)
    return Budgets(
        store,
        AccountStore(database),
        UsageStore(database),
        ledger=ledger,
        alerts=BudgetAlerts(store, settings.alert_webhook_url),
        refresh_s=settings.budget_refresh_s,
        audit=audit,
    )


def _exceeded(budget: Budget, spent: float, principal: Principal, now: float) -> BudgetExceeded:
    who = (
        f"user {principal.email or budget.subject_id}"
        if budget.scope == "user"
        else (f"API key {budget.subject_id}")
    )
    message = (
        f"Budget exceeded: {who} has spent {usd(spent)} of its {budget.period} budget of "
        f"{usd(budget.amount_usd)} ({budget.id})."
    )
    reset = resets_at(budget.period, now)
    if reset is None:
        error = BudgetExceeded(
            message + " A total budget does not reset: ask an admin to raise it."
        )
    else:
        error = BudgetExceeded(message + f" It resets at {iso(reset)}.")
        error.headers["Retry-After"] = str(max(1, math.ceil(reset - now)))
    return error


def usd(amount: float) -> str:
    if round(amount, 2) == amount:
        return f"${amount:.2f}"
    return f"${amount:.6f}".rstrip("0")
