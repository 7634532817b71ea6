"""Test support for the daily usage rollup: varied usage records over a few UTC days, and
the check that the rollup and the records give the same totals for every query it answers."""

from __future__ import annotations

import itertools
import random
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select

from aiservice.services.batch_line_run import BATCH_ROUTE
from aiservice.store.database import Database
from aiservice.store.tables import UsageDaily
from aiservice.store.usage import DAILY_GROUPS, UsageQuery, UsageStore, daily_window

DAY = 86400
FIRST_DAY = datetime(2026, 11, 28, tzinfo=UTC).timestamp()  # a UTC midnight
DAYS = 6
OWNERS = ("u1", "u2", "u3", None, "")  # "" apart from None (no owner)
KEYS = {"u1": ("key_a", "key_b"), "u2": ("key_c",), "u3": (None,), None: (None,), "": ("key_d",)}
MODELS = ("gpt-4o-mini", "gpt-4o", "smollm2-135m-instruct", None)
ROUTES = (
    "/v1/chat/completions",
    "/api/ai/chat/completions",
    "/v1/responses",
    BATCH_ROUTE,
    "/v1/embeddings",
    "/api/ai/email/summary",
    "/api/ai/email/extract-meeting",
    "embedded:/v1/chat/completions",
)
FEATURES = ("summarize", "reply", "triage", "", None)  # None: no "feature" in the metadata
STATUSES = (200,) * 8 + (429, 500, 499)
GROUPS = tuple(DAILY_GROUPS)


def midnight(day: int) -> float:
    return FIRST_DAY + day * DAY


def day_of(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).date().isoformat()


def record(rng: random.Random, number: int, prefix: str = "rec") -> dict[str, Any]:
    """One usage record as the ledger writes it (table_row), by column name."""
    day = rng.randrange(DAYS)
    # Midnight itself, the last moment of the day, or anything between.
    offset = rng.choice((0.0, DAY - 0.001, rng.uniform(0, DAY)))
    created_at = midnight(day) + offset
    owner = rng.choice(OWNERS)
    model = rng.choice(MODELS)
    status = rng.choice(STATUSES)
    feature = rng.choice(FEATURES)
    metadata = {"user_id": f"end-{rng.randrange(5)}"}
    if feature is not None:
        metadata["feature"] = feature
    tokens_in, tokens_out = rng.randrange(1, 4000), rng.randrange(0, 900)
    return {
        "record_id": f"{prefix}{number:05d}",
        "created_at": created_at,
        "day": day_of(created_at),
        "request_id": f"req_{number}",
        "owner": owner,
        "key_id": rng.choice(KEYS[owner]),
        "route": rng.choice(ROUTES),
        "background": False,
        "model_requested": model,
        "model_served": model,
        "provider": "openai",
        "input_tokens": tokens_in if model else 0,
        "output_tokens": tokens_out if status == 200 else 0,
        "cached_tokens": None,
        "cost_usd": (tokens_in * 2.5e-6 + tokens_out * 1e-5) if model and status == 200 else 0.0,
        "latency_ms": 12.5,
        "ttft_ms": None,
        "status_code": status,
        "error_code": None if status == 200 else "server_error",
        "upstream_attempts": 1,
        "priority": None,
        "wait_ms": None,
        "metadata": metadata,
        "end_user": f"end-{rng.randrange(3)}" if rng.random() < 0.5 else None,
    }


def records(count: int, seed: int = 20261128, prefix: str = "rec") -> list[dict[str, Any]]:
    rng = random.Random(seed)
    return [record(rng, number, prefix) for number in range(count)]


async def seed(store: UsageStore, rows: list[dict[str, Any]], batch: int = 40) -> None:
    """The rows in batches, as the ledger flushes them, and some of them twice over: a
    journal replayed after its batch was written, and a record twice in one batch."""
    for start in range(0, len(rows), batch):
        await store.insert_many(rows[start : start + batch])
    await store.insert_many(rows[batch : 2 * batch])  # the second batch, replayed
    await store.insert_many([rows[3], rows[3], rows[-1]])


def group_sets(most: int = len(GROUPS)) -> list[tuple[str, ...]]:
    """Every combination of the groups the rollup keeps (up to `most` of them), in one order,
    and reversed."""
    combos = [combo for size in range(most + 1) for combo in itertools.combinations(GROUPS, size)]
    return combos + [tuple(reversed(combo)) for combo in combos if len(combo) > 1]


WINDOWS = (
    (0.0, None),
    (midnight(1), None),
    (midnight(1), midnight(4)),
    (0.0, midnight(3)),
    (midnight(2), midnight(3)),
    (midnight(2), midnight(2)),  # empty
    (midnight(-30), midnight(DAYS + 30)),  # beyond both ends
)


async def assert_rollup_agrees(
    store: UsageStore,
    owners: tuple[str | None, ...] = (None, "u1"),
    windows: Any = WINDOWS,
    most: int = len(GROUPS),
) -> int:
    """totals from the records == totals from the rollup, for every group combination (each
    over all time and over one more of the windows in turn) and each owner; returns how many
    queries were compared."""
    compared = 0
    for index, groups in enumerate(group_sets(most)):
        chosen = (
            {windows[0], windows[1 + index % (len(windows) - 1)]}
            if len(windows) > 1
            else {windows[0]}
        )
        for since, until in chosen:
            for owner in owners:
                query = UsageQuery(since=since, until=until, owner=owner, group_by=groups)
                assert daily_window(query) is not None, query
                raw = await store._totals(query, daily=False)
                daily = await store._totals(query, daily=True)
                assert daily == raw, query
                compared += 1
    return compared


async def rollup_rows(database: Database) -> dict[tuple[Any, ...], tuple[Any, ...]]:
    """The rollup's rows: key → sums (cost rounded as totals round it)."""
    async with database.sessions() as session:
        rows = await session.scalars(select(UsageDaily))
        return {
            (r.day, r.owner, r.key_id, r.model_served, r.route, r.feature, r.nulls): (
                r.requests,
                r.input_tokens,
                r.output_tokens,
                round(r.cost_usd, 10),
                r.errors,
            )
            for r in rows
        }


async def assert_rollup_is_exact(database: Database) -> None:
    """The rollup as maintained is what computing it again from the records gives."""
    maintained = await rollup_rows(database)
    await UsageStore(database).rebuild_daily()
    assert await rollup_rows(database) == maintained
