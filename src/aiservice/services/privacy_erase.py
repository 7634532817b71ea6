"""Erasing a data subject: a durable job, run by the workers (or by `aiservice privacy erase`
itself), that deletes the subject's content kind by kind in short batches, puts a pseudonym in
place of the subject in the usage ledger (so billing totals stay right), deletes an erased
account last, and then forgets the subject.

Every batch commits its deletions with the job's counts, under the worker's lease: a worker
killed mid-way leaves a job whose lease runs out and whose counts match what is gone; the
next worker takes it up and carries on. Running a step again finds nothing more to do, so
nothing is counted twice. There is no undo.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from aiservice.governance.audit import AuditLog, current_actor
from aiservice.services.privacy import erasure_object, resolve_subject
from aiservice.services.privacy_subject import PrivacyRequest, Subject
from aiservice.store.accounts import AccountStore
from aiservice.store.erasures import COMPLETED, ErasureStore
from aiservice.store.subject_rows import (
    CONTENT_KINDS,
    Cursor,
    Kind,
    delete_account,
    delete_batch,
    pseudonymise_usage,
)
from aiservice.store.tables import PrivacyErasure

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ErasureSettings:
    subject_keys: list[str]
    batch_size: int = 500
    lease_s: float = 30.0
    poll_s: float = 0.5


class PrivacyErasures:
    def __init__(
        self,
        store: ErasureStore,
        accounts: AccountStore,
        audit: AuditLog,
        settings: ErasureSettings,
    ):
        self.store = store
        self._accounts = accounts
        self._audit = audit
        self._settings = settings
        self._worker_id = "erase_" + secrets.token_hex(6)
        self._wake = asyncio.Event()

    async def subject(self, request: PrivacyRequest) -> Subject:
        return await resolve_subject(request, self._accounts, self._settings.subject_keys)

    async def start(self, request: PrivacyRequest, request_id: str | None) -> dict[str, Any]:
        """Begin erasing the subject (or join its running erasure); the workers do the rest."""
        subject = await self.subject(request)
        row = await self.store.start(subject, current_actor().name, request_id)
        await self._audit.record("privacy.erase", row.id, {"subject": subject.label})
        log.info("privacy erasure started", extra={"erasure_id": row.id, "subject": subject.label})
        self._wake.set()
        return erasure_object(row)

    async def get(self, erasure_id: str) -> PrivacyErasure | None:
        return await self.store.get(erasure_id)

    async def run_until_done(self, erasure_id: str) -> PrivacyErasure | None:
        """Run one erasure here and now (the CLI), taking it over once no one else holds it."""
        while True:
            row = await self.store.claim(self._worker_id, self._settings.lease_s, erasure_id)
            if row is not None:
                return await self._erase(row)
            current = await self.store.get(erasure_id)
            if current is None or current.status == COMPLETED:
                return current
            await asyncio.sleep(self._settings.poll_s)  # another process holds it

    async def run(self) -> None:
        """The worker loop: take up running erasures, new or abandoned, one at a time."""
        while True:
            try:
                row = await self.store.claim(self._worker_id, self._settings.lease_s)
                if row is not None:
                    await self._erase(row)
                    continue
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # retried on the next round; the lease lets another try
                log.error("privacy erasure failed", extra={"error_type": type(exc).__name__})
            self._wake.clear()
            with suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._settings.poll_s)

    async def _erase(self, row: PrivacyErasure) -> PrivacyErasure | None:
        assert row.subject is not None
        subject = Subject.from_json(row.subject)
        limit = self._settings.batch_size

        usage = Cursor()

        async def pseudonymise(session: AsyncSession) -> dict[str, int]:
            done = await pseudonymise_usage(session, subject, row.pseudonym, limit, usage)
            return {"usage.record": done} if done else {}

        async def account(session: AsyncSession) -> dict[str, int]:
            return await delete_account(session, subject.owner or "")

        steps = [self._deleting(kind, subject, limit) for kind in CONTENT_KINDS]
        steps.append(pseudonymise)
        if subject.kind == "account":
            steps.append(account)
        for step in steps:
            while True:
                counts = await self.store.advance(
                    row.id, self._worker_id, self._settings.lease_s, step
                )
                if counts is None:
                    return None  # no longer ours: another worker has it
                if not counts or step is account:
                    break
        finished = await self.store.complete(row.id, self._worker_id)
        log.info("privacy erasure completed", extra={"erasure_id": row.id})
        return finished

    @staticmethod
    def _deleting(kind: Kind, subject: Subject, limit: int) -> Any:
        cursor = Cursor()

        async def step(session: AsyncSession) -> dict[str, int]:
            return await delete_batch(session, kind, subject, limit, cursor)

        return step


def build_erasures(settings: Any, database: Any, audit: AuditLog) -> PrivacyErasures:
    """From the settings (aiservice.settings.Settings) and the database of the process."""
    return PrivacyErasures(
        ErasureStore(database),
        AccountStore(database),
        audit,
        ErasureSettings(
            subject_keys=list(settings.privacy_subject_keys),
            batch_size=settings.privacy_erase_batch,
            lease_s=settings.job_lease_s,
            poll_s=settings.worker_poll_s,
        ),
    )
