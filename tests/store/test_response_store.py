"""The responses table as a job queue, on SQLite and PostgreSQL: exclusive claims under
concurrency, leases that expire, cancels and hand-backs that a late worker cannot overwrite,
recorded stream events, and expiry.

Each test gets a fresh, migrated database of its own (`[sqlite]`: a file in its tmp_path;
`[postgres]`: a new database on the test server).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace

from sqlalchemy import select

from aiservice.store.conversations import ConversationStore, Turn
from aiservice.store.database import Database
from aiservice.store.responses import NewResponse, Outcome, ResponseStore
from aiservice.store.retention import Cutoffs, RetentionStore
from aiservice.store.tables import ResponseItem

OWNER = "owner-a"


@asynccontextmanager
async def open_store(url: str) -> AsyncIterator[ResponseStore]:
    database = Database(url)
    try:
        yield ResponseStore(database)
    finally:
        await database.close()


@asynccontextmanager
async def open_retention(url: str) -> AsyncIterator[RetentionStore]:
    database = Database(url)
    try:
        yield RetentionStore(database)
    finally:
        await database.close()


def queued(*, expires_at: int | None = None, status: str = "queued") -> NewResponse:
    response_id = f"resp_{uuid.uuid4().hex}"
    body = {"id": response_id, "object": "response", "status": status, "output": []}
    return NewResponse(
        id=response_id,
        owner=OWNER,
        model="m",
        status=status,
        background=status == "queued",
        created_at=int(time.time()),
        expires_at=expires_at,
        previous_response_id=None,
        request={"model": "m", "input": "hi"},
        input_items=[],
        response=body,
        queued_at=time.time() if status == "queued" else None,
    )


def completed_outcome(response_id: str, events: list[dict] | None = None) -> Outcome:
    body = {"id": response_id, "object": "response", "status": "completed", "output": []}
    return Outcome("completed", body, "m", 3, 4, events or [])


async def test_concurrent_workers_claim_every_job_exactly_once(store_url):
    """Two databases (separate connection pools, as two processes would have) and eight
    workers claiming at once: every job is handed out once, none is left."""
    jobs = [queued() for _ in range(12)]
    async with open_store(store_url) as first, open_store(store_url) as second:
        for job in jobs:
            await first.insert(job)

        async def drain(store: ResponseStore, worker: str) -> list[str]:
            claimed = []
            while (row := await store.claim(worker, time.time(), 30)) is not None:
                assert row.worker_id == worker and row.status == "in_progress"
                claimed.append(row.id)
            return claimed

        results = await asyncio.gather(
            *(drain(first if i % 2 else second, f"worker-{i}") for i in range(8))
        )
    claimed = [job_id for result in results for job_id in result]
    assert sorted(claimed) == sorted(job.id for job in jobs)


async def test_jobs_are_claimed_oldest_first(store_url):
    jobs = [queued() for _ in range(3)]
    async with open_store(store_url) as store:
        for job in jobs:
            await store.insert(job)
        order = [(await store.claim("w", time.time(), 30)).id for _ in jobs]
    assert order == [job.id for job in jobs]


async def test_an_expired_lease_hands_the_job_to_another_worker(store_url):
    job = queued()
    async with open_store(store_url) as store:
        await store.insert(job)
        first = await store.claim("dead", time.time(), lease_s=30)
        assert first.attempts == 1
        # Still leased: nobody else gets it.
        assert await store.claim("other", time.time(), 30) is None
        # Thirty-one seconds later the lease has run out.
        second = await store.claim("other", time.time() + 31, 30)
        assert (second.id, second.attempts, second.worker_id) == (job.id, 2, "other")
        # The old worker has lost it: it can neither renew nor write the end.
        assert not await store.renew(job.id, "dead", time.time() + 30)
        assert not await store.finish(job.id, "dead", completed_outcome(job.id))
        assert await store.finish(job.id, "other", completed_outcome(job.id))
        row = await store.get(OWNER, job.id, int(time.time()))
    assert (row.status, row.worker_id, row.output_tokens) == ("completed", None, 4)


async def test_a_cancelled_job_is_not_claimed_nor_overwritten(store_url):
    waiting, running = queued(), queued()
    async with open_store(store_url) as store:
        await store.insert(running)
        await store.insert(waiting)
        assert (await store.claim("w", time.time(), 30)).id == running.id
        cancelled_body = {"id": running.id, "status": "cancelled"}
        assert await store.cancel(OWNER, running.id, cancelled_body)
        assert await store.cancel(OWNER, waiting.id, {"id": waiting.id, "status": "cancelled"})
        # Nothing left to claim, and the worker's late end is refused.
        assert await store.claim("w", time.time(), 30) is None
        assert not await store.still_held(running.id, "w")
        assert not await store.finish(running.id, "w", completed_outcome(running.id))
        # A second cancel finds nothing to cancel; a finished job cannot be cancelled.
        assert not await store.cancel(OWNER, running.id, cancelled_body)
        row = await store.get(OWNER, running.id, int(time.time()))
    assert row.status == "cancelled"
    assert row.response == cancelled_body


async def test_a_released_job_is_claimed_again_at_once(store_url):
    job = queued()
    async with open_store(store_url) as store:
        await store.insert(job)
        await store.claim("stopping", time.time(), 30)
        assert await store.release(job.id, "stopping")
        again = await store.claim("next", time.time(), 30)
    assert (again.id, again.attempts) == (job.id, 2)


async def test_events_are_recorded_only_by_the_holder_and_read_in_order(store_url):
    job = queued()
    created = {"type": "response.created", "sequence_number": 0}
    async with open_store(store_url) as store:
        await store.insert(job, [created])
        assert await store.last_event_number(job.id) == 0
        await store.claim("w", time.time(), 30)
        batch = [{"type": "delta", "sequence_number": n} for n in (1, 2)]
        assert await store.append_events(job.id, "w", batch)
        assert not await store.append_events(job.id, "intruder", [{"sequence_number": 3}])
        last = [{"type": "response.completed", "sequence_number": 3}]
        assert await store.finish(job.id, "w", completed_outcome(job.id, last))
        assert [e["sequence_number"] for e in await store.events_after(job.id, -1)] == [
            0,
            1,
            2,
            3,
        ]
        assert await store.events_after(job.id, 2) == last
        # Deleting the response deletes its events.
        assert await store.delete(OWNER, job.id)
        assert await store.events_after(job.id, -1) == []


async def test_purge_deletes_expired_ended_responses_only(store_url):
    past = int(time.time()) - 60
    expired = queued(status="completed", expires_at=past)
    expired_but_queued = queued(expires_at=past)
    live = queued(status="completed", expires_at=int(time.time()) + 3600)
    forever = queued(status="completed", expires_at=None)
    async with open_store(store_url) as store:
        for response in (expired, expired_but_queued, live, forever):
            await store.insert(response)
        async with open_retention(store_url) as retention:
            assert await retention.purge("responses", Cutoffs(now=int(time.time()))) == 1
        assert await store.get(OWNER, expired.id, now=0) is None  # gone, not just expired
        for kept in (expired_but_queued, live, forever):
            assert await store.get(OWNER, kept.id, now=0) is not None
        # An expired response is invisible to its owner even before the purge.
        assert await store.get(OWNER, expired_but_queued.id, int(time.time())) is None


async def test_a_turn_is_appended_only_with_the_end_that_is_written(store_url):
    """The conversation gets a job's turn in the transaction that writes its end; a worker
    whose end is refused (the job was cancelled) adds nothing."""
    database = Database(store_url)
    store, conversations = ResponseStore(database), ConversationStore(database)
    try:
        conversation = await conversations.create("conv_1", OWNER, int(time.time()), {}, [])
        kept, cancelled = queued(), queued()
        for job in (kept, cancelled):
            await store.insert(job)
        await store.claim("w", time.time(), 30)
        await store.claim("w", time.time(), 30)
        assert await store.cancel(OWNER, cancelled.id, {"id": cancelled.id})

        def turn(text: str) -> Turn:
            return Turn(OWNER, "conv_1", [{"id": f"msg_{text}", "type": "message", "text": text}])

        refused = Outcome("completed", {}, "m", 1, 1, turn=turn("late"))
        assert not await store.finish(cancelled.id, "w", refused)
        written = Outcome("completed", {}, "m", 1, 1, turn=turn("kept"))
        assert await store.finish(kept.id, "w", written)
        page = await conversations.items(conversation, limit=10, order="asc", after=None)
    finally:
        await database.close()
    assert [item["id"] for item in page.items] == ["msg_kept"]


def _message(item_id: str, text: str) -> dict:
    return {"id": item_id, "type": "message", "role": "user", "content": text}


async def _item_rows(database: Database) -> set[str]:
    async with database.sessions() as session:
        return set(await session.scalars(select(ResponseItem.response_id)))


async def test_items_are_found_by_id_until_their_response_is_gone(store_url):
    """Inputs and outputs of a stored response, and the output a job writes at its end, are
    found by id for their owner only; deleting or purging the response forgets them."""
    now = int(time.time())
    kept = replace(
        queued(status="completed"),
        input_items=[_message("msg_in", "question")],
        response={"id": "r", "status": "completed", "output": [_message("msg_out", "answer")]},
    )
    expiring = replace(queued(status="completed", expires_at=now - 1), input_items=[])
    job = queued()
    database = Database(store_url)
    try:
        store = ResponseStore(database)
        for response in (kept, expiring, job):
            await store.insert(response)
        found = await store.items(OWNER, ["msg_in", "msg_out", "msg_none"], now)
        assert {key: item["content"] for key, item in found.items()} == {
            "msg_in": "question",
            "msg_out": "answer",
        }
        assert await store.items("someone-else", ["msg_in", "msg_out"], now) == {}

        await store.claim("w", time.time(), 30)
        body = {"id": job.id, "status": "completed", "output": [_message("msg_job", "late")]}
        assert await store.finish(job.id, "w", Outcome("completed", body, "m", 1, 1))
        assert set(await store.items(OWNER, ["msg_job"], now)) == {"msg_job"}

        assert await store.delete(OWNER, kept.id)
        assert await store.items(OWNER, ["msg_in", "msg_out"], now) == {}
        assert kept.id not in await _item_rows(database)
        expiring_items = replace(expiring, id=f"resp_{uuid.uuid4().hex}")
        await store.insert(replace(expiring_items, input_items=[_message("msg_old", "x")]))
        assert expiring_items.id in await _item_rows(database)
        await RetentionStore(database).purge("responses", Cutoffs(now=now))
        assert expiring_items.id not in await _item_rows(database)
    finally:
        await database.close()


async def test_jobs_of_one_conversation_are_claimed_one_at_a_time_in_order(store_url):
    """Two turns of one conversation never run at once: the later waits for the earlier to
    end (however many workers ask), while another conversation's job goes ahead."""
    first, second = (replace(queued(), conversation_id="conv_x") for _ in range(2))
    other = replace(queued(), conversation_id="conv_y")
    async with open_store(store_url) as store:
        for job in (first, second, other):
            await store.insert(job)
        now = time.time()
        assert (await store.claim("w1", now, 30)).id == first.id
        assert (await store.claim("w2", now, 30)).id == other.id
        assert await store.claim("w3", now, 30) is None  # the second turn waits
        assert await store.finish(other.id, "w2", completed_outcome(other.id))
        # A dead worker's lease runs out: the first turn is taken up again, still before.
        assert (await store.claim("w3", now + 31, 30)).id == first.id
        assert await store.claim("w4", now + 31, 30) is None
        assert await store.finish(first.id, "w3", completed_outcome(first.id))
        assert (await store.claim("w4", now + 31, 30)).id == second.id


async def test_a_job_waits_for_its_previous_response_to_end(store_url):
    earlier = queued()
    later = replace(queued(), previous_response_id=earlier.id)
    async with open_store(store_url) as store:
        await store.insert(later)  # made first, yet it must run after the one it continues
        await store.insert(earlier)
        now = time.time()
        assert (await store.claim("w1", now, 30)).id == earlier.id
        assert await store.claim("w2", now, 30) is None
        assert await store.finish(earlier.id, "w1", completed_outcome(earlier.id))
        assert (await store.claim("w2", now, 30)).id == later.id
