"""Budget alerts at 50, 80 and 100 %: each raised once per budget and period, as a log line, a
row listed by `GET /v1/admin/alerts`, and a JSON POST to the configured webhook (retried with
exponential backoff, off the request path).

"Once" holds across processes: the row's unique (budget, period, threshold) index lets one
insert win, and only the winner logs and posts.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from contextlib import suppress
from typing import Any

import httpx
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
)

from aiservice.governance.budget_periods import period_start, resets_at
from aiservice.store.budgets import BudgetStore
from aiservice.store.tables import Budget, BudgetAlert

log = logging.getLogger(__name__)

THRESHOLDS = (50, 80, 100)  # percent of the budget's amount
# Sums of float costs: a threshold reached to the last bit of rounding is reached.
SPENT_EPSILON_USD = 1e-9
WEBHOOK_ATTEMPTS = 5
WEBHOOK_TIMEOUT_S = 10.0
_CLOSE_GRACE_S = 5.0  # how long a stopping process waits for deliveries under way


class WebhookRefused(Exception):
    """The webhook answered, but not with a 2xx."""


def reached(spent: float, amount: float, threshold: int = 100) -> bool:
    return spent + SPENT_EPSILON_USD >= amount * threshold / 100


def alert_view(alert: BudgetAlert) -> dict[str, Any]:
    """An alert as the admin API lists it."""
    return {
        "object": "budget.alert",
        "id": alert.id,
        "budget_id": alert.budget_id,
        "scope": alert.scope,
        "subject_id": alert.subject_id,
        "threshold": alert.threshold,
        "spent_usd": round(alert.spent_usd, 10),
        "amount_usd": alert.amount_usd,
        "period": alert.period,
        "period_start": alert.period_start,
        "created_at": alert.created_at,
        "delivered": alert.delivered,
    }


class BudgetAlerts:
    def __init__(
        self,
        store: BudgetStore,
        webhook_url: str | None = None,
        *,
        backoff_s: float = 0.5,
    ):
        self._store = store
        self._webhook_url = webhook_url
        self._backoff_s = backoff_s
        # Thresholds known raised (here or by another process): no insert tried again.
        self._raised: set[tuple[str, int, int]] = set()
        self._deliveries: set[asyncio.Task[None]] = set()
        self._client: httpx.AsyncClient | None = None

    async def evaluate(self, budget: Budget, spent: float, now: float) -> None:
        """Raise the thresholds `spent` has reached in the current period, if not yet raised."""
        start = period_start(budget.period, now)
        for threshold in THRESHOLDS:
            if not reached(spent, budget.amount_usd, threshold):
                break
            once = (budget.id, start, threshold)
            if once in self._raised:
                continue
            alert = BudgetAlert(
                id="alert_" + secrets.token_hex(12),
                budget_id=budget.id,
                scope=budget.scope,
                subject_id=budget.subject_id,
                period=budget.period,
                period_start=start,
                threshold=threshold,
                spent_usd=spent,
                amount_usd=budget.amount_usd,
                created_at=int(now),
                delivered=False,
            )
            if await self._store.add_alert(alert):
                self._announce(alert, budget, now)
            if len(self._raised) > 100_000:
                self._raised.clear()  # only an optimisation: the index still says "once"
            self._raised.add(once)

    def _announce(self, alert: BudgetAlert, budget: Budget, now: float) -> None:
        log.warning(
            "budget alert",
            extra={
                "alert_id": alert.id,
                "budget_id": budget.id,
                "scope": budget.scope,
                "subject": budget.subject_id,
                "threshold": alert.threshold,
                "spent_usd": round(alert.spent_usd, 10),
                "amount_usd": budget.amount_usd,
                "period": budget.period,
                "soft": budget.soft,
            },
        )
        if self._webhook_url is None:
            return
        body = {name: value for name, value in alert_view(alert).items() if name != "delivered"}
        body |= {"soft": budget.soft, "resets_at": resets_at(budget.period, now)}
        task = asyncio.create_task(self._deliver(alert.id, body))
        self._deliveries.add(task)
        task.add_done_callback(self._deliveries.discard)

    async def _deliver(self, alert_id: str, body: dict[str, Any]) -> None:
        assert self._webhook_url is not None
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=WEBHOOK_TIMEOUT_S)
        client, url = self._client, self._webhook_url
        try:
            async for attempt in AsyncRetrying(
                stop=stop_after_attempt(WEBHOOK_ATTEMPTS),
                wait=wait_exponential(multiplier=self._backoff_s, max=30),
                retry=retry_if_exception_type((httpx.HTTPError, WebhookRefused)),
                before_sleep=_log_retry(alert_id),
                reraise=True,
            ):
                with attempt:
                    response = await client.post(url, json=body)
                    if not response.is_success:
                        raise WebhookRefused(f"HTTP {response.status_code}")
        except (httpx.HTTPError, WebhookRefused) as exc:
            log.error(
                "budget alert not delivered",
                extra={"alert_id": alert_id, "attempts": WEBHOOK_ATTEMPTS, "error": _said(exc)},
            )
            return
        try:
            await self._store.set_delivered(alert_id)
        except Exception as exc:
            log.error(
                "budget alert delivery not recorded",
                extra={"alert_id": alert_id, "error_type": type(exc).__name__},
            )

    async def close(self) -> None:
        """Give deliveries under way a few seconds to finish, then stop them."""
        if self._deliveries:
            _, pending = await asyncio.wait(set(self._deliveries), timeout=_CLOSE_GRACE_S)
            for task in pending:
                task.cancel()
            with suppress(asyncio.CancelledError):
                await asyncio.gather(*pending, return_exceptions=True)
        if self._client is not None:
            await self._client.aclose()
            self._client = None


def _log_retry(alert_id: str) -> Any:
    def before_sleep(state: RetryCallState) -> None:
        outcome = state.outcome
        error = outcome.exception() if outcome is not None else None
        log.warning(
            "budget alert webhook failed; retrying",
            extra={
                "alert_id": alert_id,
                "attempt": state.attempt_number,
                "error": _said(error) if error is not None else None,
                "retry_in_s": round(state.next_action.sleep, 3) if state.next_action else None,
            },
        )

    return before_sleep


def _said(error: BaseException) -> str:
    # Never the exception's text for transport errors: it may quote the webhook URL, and
    # webhook URLs often carry a secret token.
    return str(error) if isinstance(error, WebhookRefused) else type(error).__name__
