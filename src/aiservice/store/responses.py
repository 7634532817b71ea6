"""Queries on stored responses, and the background job queue they double as.

A background response is a job: `claim` hands the oldest runnable one to exactly one worker
(`FOR UPDATE SKIP LOCKED` on PostgreSQL; SQLite serialises writers, so its single UPDATE is
already exclusive) under a lease the worker renews. A worker that dies stops renewing; once the
lease has expired the job is runnable again. Every later write of a job checks that the caller
still holds it, so a cancelled or taken-over job is never overwritten by its old worker.

On PostgreSQL, queuing and cancelling a job also NOTIFY the listening workers, so that other
processes react at once rather than at their next poll.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import ColumnElement, and_, delete, exists, func, insert, or_, select, update
from sqlalchemy.orm import aliased

from aiservice.store.conversations import Turn, append_turn
from aiservice.store.database import Database
from aiservice.store.response_items import Item, find_items, forget_items, index_items
from aiservice.store.response_status import UNFINISHED, ResponseStatus
from aiservice.store.tables import ResponseEvent, StoredResponse
from aiservice.store.usage import insert_records


@dataclass(frozen=True, slots=True)
class NewResponse:
    id: str
    owner: str
    model: str
    status: ResponseStatus
    background: bool
    created_at: int
    expires_at: int | None
    previous_response_id: str | None
    request: dict[str, Any]
    input_items: list[dict[str, Any]]
    response: dict[str, Any]
    input_tokens: int = 0
    output_tokens: int = 0
    queued_at: float | None = None
    key_id: str | None = None  # background jobs: who asked, for the job's usage record
    request_id: str | None = None
    conversation_id: str | None = None  # the conversation it adds its turn to


@dataclass(frozen=True, slots=True)
class Outcome:
    """The end of a job as its worker writes it."""

    status: ResponseStatus
    response: dict[str, Any]
    model: str
    input_tokens: int
    output_tokens: int
    events: list[dict[str, Any]] = field(default_factory=list)  # the last streaming events
    turn: Turn | None = None  # appended to its conversation with the end
    # Its usage record (metering/ledger.py), written with the end: a job is charged exactly
    # when it is finished, whatever happens to its worker after.
    usage: dict[str, Any] | None = None


# PostgreSQL notification channels: a job was queued; a job was cancelled (payload: its id).
JOBS_CHANNEL = "aiservice_jobs"
CANCELS_CHANNEL = "aiservice_cancels"


class ResponseStore:
    """Stored responses on one database."""

    def __init__(self, database: Database):
        self._database = database
        self._sessions = database.sessions
        self._notifies = database.dialect == "postgresql"

    @asynccontextmanager
    async def notifications(
        self, on_job: Callable[[], None], on_cancel: Callable[[str], None]
    ) -> AsyncIterator[bool]:
        """While the block runs, call `on_job` when any process queues a job and `on_cancel`
        when one cancels a job (PostgreSQL LISTEN, on a connection held for the purpose).
        Yields False where there are none (SQLite): workers then rely on polling alone."""
        if not self._notifies:
            yield False
            return
        async with self._database.engine.connect() as connection:
            raw = (await connection.get_raw_connection()).driver_connection
            listeners = {
                JOBS_CHANNEL: lambda *_: on_job(),
                CANCELS_CHANNEL: lambda _connection, _pid, _channel, payload: on_cancel(payload),
            }
            for channel, listener in listeners.items():
                await raw.add_listener(channel, listener)
            try:
                yield True
            finally:
                # Not back to the pool with listeners on it; if it is broken, it is discarded.
                with suppress(Exception):
                    for channel, listener in listeners.items():
                        await raw.remove_listener(channel, listener)

    async def insert(
        self, new: NewResponse, events: list[dict[str, Any]] = (), turn: Turn | None = None
    ) -> None:
        """Write a response, with the first streaming events of a streamed background one, or
        with the turn it adds to its conversation."""
        async with self._sessions.begin() as session:
            await session.execute(
                insert(StoredResponse).values(
                    id=new.id,
                    owner=new.owner,
                    model=new.model,
                    status=new.status,
                    background=new.background,
                    created_at=new.created_at,
                    expires_at=new.expires_at,
                    previous_response_id=new.previous_response_id,
                    request=new.request,
                    input_items=new.input_items,
                    response=new.response,
                    input_tokens=new.input_tokens,
                    output_tokens=new.output_tokens,
                    queued_at=new.queued_at,
                    attempts=0,
                    key_id=new.key_id,
                    request_id=new.request_id,
                    conversation_id=new.conversation_id,
                )
            )
            await _insert_events(session, new.id, events)
            output = new.response.get("output") or []
            await index_items(session, new.owner, new.id, [*new.input_items, *output])
            if turn is not None:
                await append_turn(session, turn)
            if new.status == ResponseStatus.QUEUED:
                await self._notify(session, JOBS_CHANNEL, "")  # delivered at commit

    async def get(self, owner: str, response_id: str, now: int) -> StoredResponse | None:
        async with self._sessions() as session:
            return await session.scalar(
                select(StoredResponse).where(
                    *_visible(owner, now), StoredResponse.id == response_id
                )
            )

    async def chain(
        self, owner: str, last_id: str, now: int
    ) -> tuple[list[StoredResponse], str | None]:
        """The responses of a `previous_response_id` chain, oldest first, and the first id
        that could not be found (None when the chain is whole)."""
        chain: list[StoredResponse] = []
        seen: set[str] = set()
        next_id: str | None = last_id
        async with self._sessions() as session:
            while next_id is not None and next_id not in seen:
                seen.add(next_id)
                row = await session.scalar(
                    select(StoredResponse).where(
                        *_visible(owner, now), StoredResponse.id == next_id
                    )
                )
                if row is None:
                    return [], next_id
                chain.append(row)
                next_id = row.previous_response_id
        chain.reverse()
        return chain, None

    async def delete(self, owner: str, response_id: str) -> bool:
        async with self._sessions.begin() as session:
            result = await session.execute(
                delete(StoredResponse).where(
                    StoredResponse.owner == owner, StoredResponse.id == response_id
                )
            )
            if result.rowcount == 0:
                return False
            await forget_items(session, [response_id])
            return True

    async def items(self, owner: str, item_ids: list[str], now: int) -> dict[str, Item]:
        """The owner's stored response items among `item_ids`, by id (see response_items)."""
        async with self._sessions() as session:
            return await find_items(session, owner, item_ids, _visible(owner, now))

    async def cancel(self, owner: str, response_id: str, response: dict[str, Any]) -> bool:
        """Mark an unfinished job cancelled; False if it had already ended (or never was)."""
        async with self._sessions.begin() as session:
            result = await session.execute(
                update(StoredResponse)
                .where(
                    StoredResponse.owner == owner,
                    StoredResponse.id == response_id,
                    StoredResponse.status.in_(UNFINISHED),
                )
                .values(
                    status=ResponseStatus.CANCELLED,
                    response=response,
                    worker_id=None,
                    lease_expires_at=None,
                )
            )
            if result.rowcount == 0:
                return False
            await self._notify(session, CANCELS_CHANNEL, response_id)
            return True

    async def _notify(self, session: Any, channel: str, payload: str) -> None:
        if self._notifies:
            await session.execute(select(func.pg_notify(channel, payload)))

    async def claim(self, worker_id: str, now: float, lease_s: float) -> StoredResponse | None:
        """Take the oldest runnable job — queued, or in progress under an expired lease — for
        `worker_id`, counting the attempt."""
        runnable = or_(
            StoredResponse.status == ResponseStatus.QUEUED,
            and_(
                StoredResponse.status == ResponseStatus.IN_PROGRESS,
                StoredResponse.lease_expires_at < now,
            ),
        )
        oldest = (
            select(StoredResponse.seq)
            .where(runnable, ~_waits_for_an_earlier_job())
            .order_by(StoredResponse.seq)
            .limit(1)
            .with_for_update(skip_locked=True)
            .scalar_subquery()
        )
        async with self._sessions.begin() as session:
            return await session.scalar(
                update(StoredResponse)
                .where(StoredResponse.seq == oldest, runnable)
                .values(
                    status=ResponseStatus.IN_PROGRESS,
                    worker_id=worker_id,
                    lease_expires_at=now + lease_s,
                    attempts=StoredResponse.attempts + 1,
                )
                .returning(StoredResponse)
            )

    async def renew(self, response_id: str, worker_id: str, until: float) -> bool:
        """Extend the lease; False when the job is no longer this worker's (cancelled, or
        taken over after the lease ran out)."""
        async with self._sessions.begin() as session:
            result = await session.execute(
                update(StoredResponse)
                .where(*_held(response_id, worker_id))
                .values(lease_expires_at=until)
            )
            return result.rowcount > 0

    async def still_held(self, response_id: str, worker_id: str) -> bool:
        async with self._sessions() as session:
            found = await session.scalar(
                select(StoredResponse.seq).where(*_held(response_id, worker_id))
            )
            return found is not None

    async def mark_started(self, response_id: str, worker_id: str, response: dict) -> bool:
        async with self._sessions.begin() as session:
            result = await session.execute(
                update(StoredResponse)
                .where(*_held(response_id, worker_id))
                .values(response=response)
            )
            return result.rowcount > 0

    async def append_events(
        self, response_id: str, worker_id: str, events: list[dict[str, Any]]
    ) -> bool:
        """Record streaming events of a job this worker still holds."""
        async with self._sessions.begin() as session:
            held = await session.scalar(
                select(StoredResponse.seq).where(*_held(response_id, worker_id))
            )
            if held is None:
                return False
            await _insert_events(session, response_id, events)
            return True

    async def events_after(self, response_id: str, after: int) -> list[dict[str, Any]]:
        async with self._sessions() as session:
            rows = await session.scalars(
                select(ResponseEvent.event)
                .where(
                    ResponseEvent.response_id == response_id,
                    ResponseEvent.sequence_number > after,
                )
                .order_by(ResponseEvent.sequence_number)
            )
            return list(rows)

    async def last_event_number(self, response_id: str) -> int:
        """The sequence number of the last recorded event; -1 if there is none."""
        async with self._sessions() as session:
            last = await session.scalar(
                select(func.max(ResponseEvent.sequence_number)).where(
                    ResponseEvent.response_id == response_id
                )
            )
            return -1 if last is None else int(last)

    async def count_queued(self) -> int:
        """How many jobs wait for a worker (the metrics' queue depth)."""
        async with self._sessions() as session:
            count = await session.scalar(
                select(func.count())
                .select_from(StoredResponse)
                .where(StoredResponse.status == ResponseStatus.QUEUED)
            )
            return int(count or 0)

    async def bodies(self, response_ids: list[str]) -> dict[str, tuple[str, dict[str, Any]]]:
        """The status and body of each of these responses that exists, by id."""
        if not response_ids:
            return {}
        async with self._sessions() as session:
            rows = await session.execute(
                select(StoredResponse.id, StoredResponse.status, StoredResponse.response).where(
                    StoredResponse.id.in_(response_ids)
                )
            )
            return {row.id: (row.status, row.response) for row in rows}

    async def status(self, response_id: str) -> str | None:
        async with self._sessions() as session:
            return await session.scalar(
                select(StoredResponse.status).where(StoredResponse.id == response_id)
            )

    async def finish(
        self,
        response_id: str,
        worker_id: str,
        outcome: Outcome,
    ) -> bool:
        """Write the job's end, with its last streaming events; False (nothing written) when
        the job is no longer this worker's."""
        async with self._sessions.begin() as session:
            result = await session.execute(
                update(StoredResponse)
                .where(*_held(response_id, worker_id))
                .values(
                    status=outcome.status,
                    response=outcome.response,
                    model=outcome.model,
                    input_tokens=outcome.input_tokens,
                    output_tokens=outcome.output_tokens,
                    worker_id=None,
                    lease_expires_at=None,
                )
            )
            if result.rowcount == 0:
                return False
            owner = await session.scalar(
                select(StoredResponse.owner).where(StoredResponse.id == response_id)
            )
            output = outcome.response.get("output") or []
            await index_items(session, owner or "", response_id, output)
            await _insert_events(session, response_id, outcome.events)
            if outcome.turn is not None:
                await append_turn(session, outcome.turn)
            if outcome.usage is not None:
                await insert_records(session, [outcome.usage])
            return True

    async def release(self, response_id: str, worker_id: str) -> bool:
        """Hand a job back to the queue (its worker is stopping) without waiting for its lease."""
        async with self._sessions.begin() as session:
            result = await session.execute(
                update(StoredResponse)
                .where(*_held(response_id, worker_id))
                .values(status=ResponseStatus.QUEUED, worker_id=None, lease_expires_at=None)
            )
            return result.rowcount > 0


async def _insert_events(session: Any, response_id: str, events: Any) -> None:
    if events:
        await session.execute(
            insert(ResponseEvent),
            [
                {"response_id": response_id, "sequence_number": e["sequence_number"], "event": e}
                for e in events
            ],
        )


def _visible(owner: str, now: int) -> tuple:
    return (
        StoredResponse.owner == owner,
        or_(StoredResponse.expires_at.is_(None), StoredResponse.expires_at > now),
    )


def _waits_for_an_earlier_job() -> ColumnElement[bool]:
    """A job whose conversation has an earlier job not yet ended, or whose previous response
    has not ended: it runs after them (two turns must not read the conversation at once)."""
    earlier = aliased(StoredResponse)
    unfinished = earlier.status.in_(UNFINISHED)
    same_conversation = and_(
        StoredResponse.conversation_id.is_not(None),
        earlier.conversation_id == StoredResponse.conversation_id,
        earlier.seq < StoredResponse.seq,
    )
    previous = earlier.id == StoredResponse.previous_response_id
    return exists().where(unfinished, or_(same_conversation, previous))


def _held(response_id: str, worker_id: str) -> tuple:
    return (
        StoredResponse.id == response_id,
        StoredResponse.status == ResponseStatus.IN_PROGRESS,
        StoredResponse.worker_id == worker_id,
    )
