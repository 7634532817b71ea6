"""The retention policy, enforced: every kind of stored row deleted once it is older than its
kind's retention (`[retention]`) or past its own expiry. The workers run it every
`purge_interval_s` (`ServiceRuntime`); `aiservice purge` runs one round at once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, TypeVar

from aiservice.settings import Settings
from aiservice.store.database import Database
from aiservice.store.retention import KINDS, Cutoffs, RetentionStore

if TYPE_CHECKING:  # `aiservice purge` has no metrics: it does without their imports
    from aiservice.observability.metrics import ServiceMetrics

log = logging.getLogger(__name__)
DAY_S = 86400
PURGED_KINDS = tuple(KINDS)
T = TypeVar("T")


def retention_days(settings: Settings) -> dict[str, int]:
    """Each kind's retention in days (0: no age limit): the `[retention]` section over the
    top-level `retention_days`, which configurations written before the section still set."""
    section = settings.retention
    responses = _given(section.responses_days, settings.retention_days)
    return {
        "chat_completions": _given(section.chat_completions_days, settings.retention_days),
        "responses": responses,
        "conversations": section.conversations_days,
        "document_analyses": _given(section.document_analyses_days, responses),
        "batches": section.batches_days,
        "files": section.files_days,
        "usage_records": section.usage_days,
    }


def purge_interval_s(settings: Settings) -> float:
    return _given(settings.retention.purge_interval_s, settings.purge_interval_s)


def _given(value: T | None, default: T) -> T:
    return default if value is None else value


class RetentionPurge:
    """One purge round (`run_once`) or one every interval (`run_periodically`)."""

    def __init__(self, database: Database, settings: Settings, metrics: ServiceMetrics | None):
        self._store = RetentionStore(database, settings.retention.chunk_rows)
        self._days = retention_days(settings)
        self._interval_s = purge_interval_s(settings)
        self._metrics = metrics

    def cutoffs(self, now: float) -> Cutoffs:
        ages = {kind: now - days * DAY_S for kind, days in self._days.items() if days}
        return Cutoffs(now=int(now), **ages)

    async def run_once(self, now: float | None = None) -> dict[str, int] | None:
        """Purge every kind; returns the rows deleted by kind, or None if another process is
        purging the same database right now (its round does the work)."""
        cutoffs = self.cutoffs(time.time() if now is None else now)
        async with self._store.purge_turn() as ours:
            if not ours:
                return None
            purged = {}
            for kind in PURGED_KINDS:
                purged[kind] = count = await self._store.purge(kind, cutoffs)
                if count:
                    # Counts only: what the rows held is nobody's business in a log.
                    log.info("retention purge", extra={"kind": kind, "purged": count})
        if self._metrics is not None:
            self._metrics.observe_purged(purged)
        return purged

    async def run_periodically(self) -> None:
        """A round now and every interval after; a failed round is logged and retried at the
        next."""
        while True:
            try:
                await self.run_once()
            except Exception as exc:
                log.error("retention purge failed", extra={"error_type": type(exc).__name__})
            await asyncio.sleep(self._interval_s)
