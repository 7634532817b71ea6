"""The audit log: who did which administrative action, on what, when, under which request."""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from aiservice.store.audit import AuditStore
from aiservice.store.tables import AuditEntry


@dataclass(frozen=True, slots=True)
class Actor:
    name: str  # "user_…" (an admin), "admin" (the master key), "cli:<os user>", "system"
    request_id: str | None = None


_actor: ContextVar[Actor | None] = ContextVar("audit_actor", default=None)
SYSTEM = Actor("system")


@contextmanager
def acting_as(actor: Actor) -> Iterator[None]:
    token = _actor.set(actor)
    try:
        yield
    finally:
        _actor.reset(token)


def current_actor() -> Actor:
    return _actor.get() or SYSTEM


class AuditLog:
    def __init__(self, store: AuditStore):
        self._store = store

    async def record(self, action: str, target: str, details: dict[str, Any] | None = None) -> None:
        actor = current_actor()
        await self._store.add(
            AuditEntry(
                id="audit_" + secrets.token_hex(12),
                created_at=int(time.time()),
                actor=actor.name,
                action=action,
                target=target,
                request_id=actor.request_id,
                details=details,
            )
        )
