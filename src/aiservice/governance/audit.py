"""The audit log: who did which administrative action, on what, when, under which request."""

from __future__ import annotations

import getpass
import os
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from aiservice.errors import InvalidRequest
from aiservice.store.audit import AuditQuery, AuditStore, UnknownAuditCursor
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


def cli_actor() -> Actor:
    """Whoever runs the CLI, by their OS account: the CLI needs no login, the machine did it."""
    try:
        name = getpass.getuser()
    except OSError:  # no user name in the environment nor in the password database
        name = f"uid-{os.getuid()}"
    return Actor(f"cli:{name}")


class AuditLog:
    """Where the services write what an admin did (API and CLI alike: the actor comes from
    the context, set by the admin API's dependency or by the CLI), and where it is read."""

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

    async def entries(self, query: AuditQuery) -> dict[str, Any]:
        """One page of entries, newest first, as an OpenAI-style list object."""
        try:
            page = await self._store.list(query)
        except UnknownAuditCursor:
            raise InvalidRequest(
                f"No audit entry found with id '{query.after}'.", param="after"
            ) from None
        data = [entry_view(row) for row in page.rows]
        return {
            "object": "list",
            "data": data,
            "first_id": data[0]["id"] if data else "",
            "last_id": data[-1]["id"] if data else "",
            "has_more": page.has_more,
        }


def entry_view(entry: AuditEntry) -> dict[str, Any]:
    return {
        "id": entry.id,
        "object": "audit.entry",
        "created_at": entry.created_at,
        "actor": entry.actor,
        "action": entry.action,
        "target": entry.target,
        "request_id": entry.request_id,
        "details": entry.details or {},
    }
