"""Stored chat completions on PostgreSQL at scale: list and retrieve latency through the store.

Creates a database of its own (a unique name on --server; dropped at the end unless --keep),
brings it to the newest schema with `upgrade_database`, bulk-loads --rows stored completions
with asyncpg COPY (`copy_records_to_table`, both tables), then VACUUM ANALYZE. Then it times,
through `CompletionStore` on the async engine (the code path the HTTP routes use), --iterations
rounds of every query below after --warmup rounds, one query at a time, the queries of a round
interleaved so that drifts in machine load hit them all alike. Target: p95 < 20 ms each.

The data (seeded, so runs are comparable):
  owners    "big" 90 % of the rows, the rest spread over 50 owners "team-00".."team-49"
  models    gpt-4o-mini 55 %, gpt-4o 25 %, smollm2-135m 15 %, o3-mini 5 %
  metadata  2-4 pairs per row:
              feature     always: auto_reply 40 %, classify 30 %, extract 29 %, rare 1 %
              user_id     always: one of 10,000 users (~0.01 % each)
              env         50 % of rows: prod 90 %, staging 10 %
              session_id  30 % of rows: a fresh value each
  created   evenly over the last 30 days and 1 hour, in insertion order; expires_at is
            created + 30 days, so the oldest hour is expired but not yet purged (the server
            purges hourly): those rows are invisible and the queries must step over them
  request   2 messages (system + user of 50-600 characters) and the usual parameters
  response  a ChatCompletion body as the SDK dumps it, about 700 bytes of JSON

Every query reads a page of 20 (the API's default limit) as owner "big" unless it says
otherwise; random parameters (user, cursor, id) are drawn anew for each call. "insert" is one
`CompletionStore.insert` (a completion and its metadata pairs, one transaction) and has no
target. "loop lag" is how late a 1 ms timer fired while the queries ran: the longest time any
of this code held the event loop.

    .venv/bin/python benchmarks/store_list.py                      # 1,000,000 rows
    .venv/bin/python benchmarks/store_list.py --rows 100000 --keep # keep the database
    .venv/bin/python benchmarks/store_list.py --database NAME      # re-measure a kept one
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import random
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import asyncpg
from rich.console import Console
from rich.table import Table

from aiservice.services.queries import CompletionFilter
from aiservice.store.completions import CompletionStore, NewCompletion
from aiservice.store.database import Database
from aiservice.store.migrate import upgrade_database

console = Console(width=None if sys.stdout.isatty() else 140)

TARGET_P95_MS = 20.0
PAGE = 20
CHUNK = 20_000  # rows per COPY
DAY = 86_400
RETENTION = 30 * DAY
UNPURGED = 3_600  # the oldest hour has expired and waits for the hourly purge

BIG = "big"
SMALL_OWNERS = [f"team-{i:02d}" for i in range(50)]
MODELS = (("gpt-4o-mini", 55), ("gpt-4o", 25), ("smollm2-135m", 15), ("o3-mini", 5))
FEATURES = (("auto_reply", 40), ("classify", 30), ("extract", 29), ("rare", 1))
USERS = 10_000

COMPLETION_COLUMNS = (
    "seq",
    "id",
    "owner",
    "model",
    "created_at",
    "expires_at",
    "request",
    "response",
    "metadata",
    "prompt_tokens",
    "completion_tokens",
)
METADATA_COLUMNS = ("completion_seq", "key", "value", "owner")

_VOCABULARY = (
    "the a of to and in is it that for on with as this was be by are not from or at have an "
    "order invoice customer ticket refund shipping account password reset delivery product "
    "support please thanks could would should issue error update status request summary "
    "classify extract reply label priority urgent normal low high email message week today "
    "payment card address change cancel subscription plan upgrade billing question answer"
)
_WORDS = _VOCABULARY.split()


# --- data ---------------------------------------------------------------------------------


def _texts(rng: random.Random, count: int, low: int, high: int) -> list[str]:
    texts = []
    for _ in range(count):
        target = rng.randint(low, high)
        words: list[str] = []
        length = 0
        while length < target:
            word = rng.choice(_WORDS)
            words.append(word)
            length += len(word) + 1
        texts.append(" ".join(words).capitalize() + ".")
    return texts


def _cumulative(weights: tuple[tuple[str, int], ...]) -> tuple[list[str], list[int]]:
    names, cum, total = [], [], 0
    for name, weight in weights:
        total += weight
        names.append(name)
        cum.append(total)
    return names, cum


class Generator:
    """Seeded rows for both tables, chunk by chunk, in seq order."""

    def __init__(self, rows: int, seed: int, now: int):
        self.rows = rows
        self.rng = random.Random(seed)
        self.start = now - RETENTION - UNPURGED
        self.span = RETENTION + UNPURGED
        self.prompts = _texts(self.rng, 4096, 50, 600)
        self.answers = _texts(self.rng, 4096, 20, 200)
        self.system = _texts(self.rng, 16, 60, 200)
        self.models = _cumulative(MODELS)
        self.features = _cumulative(FEATURES)

    def chunk(self, first: int, last: int) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
        """Rows with seq first..last (inclusive) and their metadata rows."""
        rng = self.rng
        dumps = json.dumps
        completions: list[tuple[Any, ...]] = []
        pairs: list[tuple[Any, ...]] = []
        model_names, model_cum = self.models
        feature_names, feature_cum = self.features
        for seq in range(first, last + 1):
            owner = BIG if rng.random() < 0.9 else SMALL_OWNERS[rng.randrange(50)]
            model = rng.choices(model_names, cum_weights=model_cum)[0]
            metadata = {
                "feature": rng.choices(feature_names, cum_weights=feature_cum)[0],
                "user_id": f"user-{rng.randrange(USERS):05d}",
            }
            if rng.random() < 0.5:
                metadata["env"] = "staging" if rng.random() < 0.1 else "prod"
            if rng.random() < 0.3:
                metadata["session_id"] = f"sess-{rng.getrandbits(64):016x}"
            created = self.start + (seq - 1) * self.span // self.rows
            completion_id = f"chatcmpl-{rng.getrandbits(128):032x}"
            prompt = self.prompts[rng.randrange(4096)]
            answer = self.answers[rng.randrange(4096)]
            prompt_tokens = 12 + len(prompt) // 4
            completion_tokens = 1 + len(answer) // 4
            request = {
                "model": model,
                "messages": [
                    {"role": "system", "content": self.system[seq % 16]},
                    {"role": "user", "content": prompt},
                ],
                "temperature": 0.2,
                "max_completion_tokens": 512,
                "store": True,
                "metadata": metadata,
            }
            response = {
                "id": completion_id,
                "choices": [
                    {
                        "finish_reason": "stop",
                        "index": 0,
                        "logprobs": None,
                        "message": {
                            "content": answer,
                            "refusal": None,
                            "role": "assistant",
                            "annotations": [],
                        },
                    }
                ],
                "created": created,
                "model": model,
                "object": "chat.completion",
                "service_tier": "default",
                "system_fingerprint": "fp_560af6e559",
                "usage": {
                    "completion_tokens": completion_tokens,
                    "prompt_tokens": prompt_tokens,
                    "total_tokens": prompt_tokens + completion_tokens,
                    "completion_tokens_details": {
                        "accepted_prediction_tokens": 0,
                        "audio_tokens": 0,
                        "reasoning_tokens": 0,
                        "rejected_prediction_tokens": 0,
                    },
                    "prompt_tokens_details": {"audio_tokens": 0, "cached_tokens": 0},
                },
            }
            completions.append(
                (
                    seq,
                    completion_id,
                    owner,
                    model,
                    created,
                    created + RETENTION,
                    dumps(request),
                    dumps(response),
                    dumps(metadata),
                    prompt_tokens,
                    completion_tokens,
                )
            )
            pairs.extend((seq, key, value, owner) for key, value in metadata.items())
        return completions, pairs


async def load(dsn: str, rows: int, seed: int) -> dict[str, float]:
    """COPY the rows in chunks (the next chunk is generated in a thread while PostgreSQL
    takes the current one), then VACUUM ANALYZE. Returns the phases' durations in seconds."""
    generator = Generator(rows, seed, int(time.time()))
    connection = await asyncpg.connect(dsn)
    timings: dict[str, float] = {}
    try:
        started = time.perf_counter()
        bounds = [(first, min(first + CHUNK - 1, rows)) for first in range(1, rows + 1, CHUNK)]
        pending = asyncio.create_task(asyncio.to_thread(generator.chunk, *bounds[0]))
        for index, (_, last) in enumerate(bounds):
            completions, pairs = await pending
            if index + 1 < len(bounds):
                pending = asyncio.create_task(
                    asyncio.to_thread(generator.chunk, *bounds[index + 1])
                )
            async with connection.transaction():
                await connection.copy_records_to_table(
                    "chat_completions", records=completions, columns=COMPLETION_COLUMNS
                )
                await connection.copy_records_to_table(
                    "chat_completion_metadata", records=pairs, columns=METADATA_COLUMNS
                )
            if (index + 1) % 10 == 0 or last == rows:
                elapsed = time.perf_counter() - started
                console.print(
                    f"  {last:>9,} rows  {elapsed:6.1f} s  ({last / elapsed:,.0f} rows/s)",
                    highlight=False,
                )
        await connection.execute(
            "SELECT setval(pg_get_serial_sequence('chat_completions', 'seq'), $1)", rows
        )
        timings["copy"] = time.perf_counter() - started
        started = time.perf_counter()
        await connection.execute("VACUUM ANALYZE chat_completions, chat_completion_metadata")
        timings["vacuum analyze"] = time.perf_counter() - started
    finally:
        await connection.close()
    return timings


# --- measurement ----------------------------------------------------------------------------


@dataclass
class Case:
    name: str
    run: Callable[[random.Random], Awaitable[int]]  # returns the rows it got
    target: bool = True
    samples: list[float] = field(default_factory=list)
    rows: list[int] = field(default_factory=list)


@dataclass
class Sample:
    """Ids and owners of random rows, for cursors and retrieves."""

    big_ids: list[str]
    other_ids: list[str]  # rows of small owners: invisible to "big"


async def sample_ids(dsn: str, rows: int, seed: int) -> Sample:
    rng = random.Random(seed + 1)
    # Skip the expired oldest hour: a cursor or id there is not found, not slow.
    lowest = rows * UNPURGED // (RETENTION + UNPURGED) + rows // 100
    seqs = rng.sample(range(lowest, rows + 1), min(5000, rows - lowest))
    connection = await asyncpg.connect(dsn)
    try:
        found = await connection.fetch(
            "SELECT id, owner FROM chat_completions WHERE seq = ANY($1::bigint[])", seqs
        )
    finally:
        await connection.close()
    return Sample(
        big_ids=[r["id"] for r in found if r["owner"] == BIG],
        other_ids=[r["id"] for r in found if r["owner"] != BIG],
    )


def build_cases(store: CompletionStore, sample: Sample) -> list[Case]:
    def listing(owner: str = BIG, **kwargs: Any) -> Callable[[random.Random], Awaitable[int]]:
        params = {"order": "asc", **kwargs}

        async def run(rng: random.Random) -> int:
            resolved = {k: v(rng) if callable(v) else v for k, v in params.items()}
            if "metadata" in resolved:
                resolved["metadata"] = {
                    k: v(rng) if callable(v) else v for k, v in resolved["metadata"].items()
                }
            page = await store.list(
                owner, int(time.time()), CompletionFilter(limit=PAGE, **resolved)
            )
            return len(page.rows)

        return run

    def user(rng: random.Random) -> str:
        return f"user-{rng.randrange(USERS):05d}"

    def cursor(rng: random.Random) -> str:
        return rng.choice(sample.big_ids)

    async def retrieve(rng: random.Random) -> int:
        row = await store.get(BIG, rng.choice(sample.big_ids), int(time.time()))
        return int(row is not None)

    async def retrieve_other(rng: random.Random) -> int:
        row = await store.get(BIG, rng.choice(sample.other_ids), int(time.time()))
        return int(row is not None)

    async def insert(rng: random.Random) -> int:
        now = int(time.time())
        completion_id = f"chatcmpl-bench{os.urandom(12).hex()}"  # unique across re-runs
        await store.insert(
            NewCompletion(
                id=completion_id,
                owner=BIG,
                model="gpt-4o-mini",
                created_at=now,
                expires_at=now + RETENTION,
                request={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hi"}]},
                response={"id": completion_id, "object": "chat.completion", "created": now},
                metadata={"feature": "classify", "user_id": user(rng), "env": "prod"},
                prompt_tokens=8,
                completion_tokens=3,
            )
        )
        return 1

    return [
        Case("metadata feature=auto_reply (40 %)", listing(metadata={"feature": "auto_reply"})),
        Case("metadata feature=rare (1 %)", listing(metadata={"feature": "rare"})),
        Case("metadata user_id=<random> (0.01 %)", listing(metadata={"user_id": user})),
        Case(
            "metadata feature=auto_reply AND user_id=<random>",
            listing(metadata={"feature": "auto_reply", "user_id": user}),
        ),
        Case(
            "metadata user_id=<random> AND feature=auto_reply",
            listing(metadata={"user_id": user, "feature": "auto_reply"}),
        ),
        Case(
            "metadata env=staging AND feature=classify",
            listing(metadata={"env": "staging", "feature": "classify"}),
        ),
        Case(
            "metadata feature=rare AND user_id=<random>",
            listing(metadata={"feature": "rare", "user_id": user}),
        ),
        Case(
            "metadata feature=auto_reply, desc",
            listing(metadata={"feature": "auto_reply"}, order="desc"),
        ),
        Case(
            "metadata feature=rare, owner team-07", listing("team-07", metadata={"feature": "rare"})
        ),
        Case("model=gpt-4o-mini (55 %)", listing(model="gpt-4o-mini")),
        Case("model=o3-mini (5 %)", listing(model="o3-mini")),
        Case(
            "model=o3-mini AND metadata feature=rare",
            listing(model="o3-mini", metadata={"feature": "rare"}),
        ),
        Case("plain list, asc", listing()),
        Case("plain list, desc", listing(order="desc")),
        Case("plain list, owner team-07", listing("team-07")),
        Case("after=<random id>, asc", listing(after=cursor)),
        Case("after=<random id>, desc", listing(after=cursor, order="desc")),
        Case(
            "after=<random id> + feature=auto_reply",
            listing(after=cursor, metadata={"feature": "auto_reply"}),
        ),
        Case("retrieve <random id>", retrieve),
        Case("retrieve <other owner's id> (miss)", retrieve_other),
        Case("insert (+3 metadata pairs)", insert, target=False),
    ]


@dataclass
class LoopWatch:
    """How late a 1 ms timer fires (the longest the event loop was held), and the longest
    garbage collection, which holds it too, so that a lag can be told from a GC pause."""

    lags: list[float] = field(default_factory=list)
    gc_pauses: list[float] = field(default_factory=list)
    _gc_started: float = 0.0

    def on_gc(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._gc_started = time.perf_counter()
        else:
            self.gc_pauses.append((time.perf_counter() - self._gc_started) * 1000)

    def clear(self) -> None:
        self.lags.clear()
        self.gc_pauses.clear()


async def measure(cases: list[Case], iterations: int, warmup: int, seed: int) -> LoopWatch:
    """Run every case once per round, warm-up rounds first."""
    rng = random.Random(seed + 2)
    watch = LoopWatch()
    stop = asyncio.Event()

    async def watch_loop() -> None:
        while not stop.is_set():
            started = time.perf_counter()
            await asyncio.sleep(0.001)
            watch.lags.append((time.perf_counter() - started - 0.001) * 1000)

    watcher = asyncio.create_task(watch_loop())
    gc.callbacks.append(watch.on_gc)
    try:
        for round_ in range(warmup + iterations):
            for case in cases:
                started = time.perf_counter()
                got = await case.run(rng)
                elapsed = (time.perf_counter() - started) * 1000
                if round_ >= warmup:
                    case.samples.append(elapsed)
                    case.rows.append(got)
            if round_ + 1 == warmup:
                watch.clear()
                console.print(f"  warm-up done ({warmup} rounds)", highlight=False)
            elif round_ >= warmup and (round_ + 1 - warmup) % 100 == 0:
                console.print(f"  {round_ + 1 - warmup}/{iterations} rounds", highlight=False)
    finally:
        gc.callbacks.remove(watch.on_gc)
        stop.set()
        await watcher
    return watch


# --- report -------------------------------------------------------------------------------


def percentiles(values: list[float]) -> tuple[float, float, float]:
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return cuts[49], cuts[94], cuts[98]


def report(cases: list[Case], args: argparse.Namespace, info: dict[str, Any]) -> bool:
    table = Table(
        title=(
            f"Stored completions on PostgreSQL: {info['rows']:,} rows, "
            f"{info['pairs']:,} metadata pairs, {args.iterations} calls each, page {PAGE}"
        )
    )
    table.add_column("query (owner big unless named)")
    table.add_column("rows/page", justify="right")
    table.add_column("p50 ms", justify="right")
    table.add_column("p95 ms", justify="right")
    table.add_column("p99 ms", justify="right")
    table.add_column("max ms", justify="right")
    table.add_column("result", justify="center")
    all_ok = True
    for case in cases:
        p50, p95, p99 = percentiles(case.samples)
        if case.target:
            ok = p95 < TARGET_P95_MS
            all_ok &= ok
            verdict = "[green]PASS[/green]" if ok else "[red]FAIL[/red]"
        else:
            verdict = "(no target)"
        table.add_row(
            case.name,
            f"{statistics.mean(case.rows):.1f}",
            f"{p50:.2f}",
            f"{p95:.2f}",
            f"{p99:.2f}",
            f"{max(case.samples):.2f}",
            verdict,
        )
    console.print(table)
    return all_ok


async def database_info(dsn: str) -> dict[str, Any]:
    connection = await asyncpg.connect(dsn)
    try:
        return {
            "rows": await connection.fetchval("SELECT count(*) FROM chat_completions"),
            "pairs": await connection.fetchval("SELECT count(*) FROM chat_completion_metadata"),
            "size": await connection.fetchval(
                "SELECT pg_size_pretty(pg_database_size(current_database()))"
            ),
            "version": await connection.fetchval("SHOW server_version"),
            "response_bytes": await connection.fetchval(
                "SELECT avg(pg_column_size(response))::int FROM chat_completions"
            ),
            "request_bytes": await connection.fetchval(
                "SELECT avg(pg_column_size(request))::int FROM chat_completions"
            ),
        }
    finally:
        await connection.close()


async def run(args: argparse.Namespace) -> int:
    server = args.server.rstrip("/")
    name = args.database or f"aiservice_bench_{os.getpid()}_{int(time.time())}"
    dsn = f"{server}/{name}"
    url = dsn.replace("postgresql://", "postgresql+asyncpg://", 1)
    created = False
    try:
        load_timings: dict[str, float] = {}
        if not args.database:
            admin = await asyncpg.connect(f"{server}/postgres")
            try:
                await admin.execute(f'CREATE DATABASE "{name}"')
            finally:
                await admin.close()
            created = True
            console.print(f"database {name} created", highlight=False)
        started = time.perf_counter()
        await asyncio.to_thread(upgrade_database, url)  # Alembic runs a loop of its own
        console.print(f"migrations applied in {time.perf_counter() - started:.1f} s")
        if not args.database:
            console.print(f"loading {args.rows:,} stored completions with COPY ...")
            load_timings = await load(dsn, args.rows, args.seed)
        info = await database_info(dsn)
        sample = await sample_ids(dsn, info["rows"], args.seed)

        database = Database(url)
        try:
            store = CompletionStore(database)
            cases = build_cases(store, sample)
            console.print(
                f"measuring {len(cases)} queries x {args.iterations} calls "
                f"(after {args.warmup} warm-up rounds) ...",
                highlight=False,
            )
            watch = await measure(cases, args.iterations, args.warmup, args.seed)
        finally:
            await database.close()

        ok = report(cases, args, info)
        if load_timings:
            total = sum(load_timings.values())
            phases = ", ".join(f"{k} {v:.1f} s" for k, v in load_timings.items())
            console.print(
                f"load: {info['rows']:,} rows + {info['pairs']:,} metadata pairs in "
                f"{total:.1f} s ({phases}; {info['rows'] / load_timings['copy']:,.0f} rows/s "
                "into the migrated schema, indexes in place); average stored JSONB: response "
                f"{info['response_bytes']} bytes, request {info['request_bytes']} bytes",
                highlight=False,
            )
        lags = watch.lags
        console.print(
            f"event loop lag while measuring: p99 {percentiles(lags)[2]:.2f} ms, max "
            f"{max(lags):.2f} ms ({len(lags):,} ticks); longest garbage collection "
            f"{max(watch.gc_pauses, default=0):.2f} ms ({len(watch.gc_pauses):,} runs)",
            highlight=False,
        )
        console.print(
            f"database {name}, {info['size']}, PostgreSQL {info['version']}; "
            f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}; target: p95 < "
            f"{TARGET_P95_MS:.0f} ms for every query but insert",
            highlight=False,
        )
        return 0 if ok else 1
    finally:
        if created and not args.keep:
            admin = await asyncpg.connect(f"{server}/postgres")
            try:
                await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            finally:
                await admin.close()
            console.print(f"database {name} dropped", highlight=False)
        elif created:
            console.print(f"database {name} kept (--database {name} to re-measure)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="stored completions to load")
    parser.add_argument("--iterations", type=int, default=300, help="measured calls per query")
    parser.add_argument("--warmup", type=int, default=30, help="warm-up rounds, not measured")
    parser.add_argument(
        "--server",
        default=os.environ.get("BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432"),
        help="PostgreSQL server (a role that may create databases); env BENCH_POSTGRES",
    )
    parser.add_argument("--keep", action="store_true", help="keep the database at the end")
    parser.add_argument(
        "--database",
        help="measure this existing database (one kept with --keep) instead of loading one; "
        "migrations are applied first, so new ones can be measured against the same data",
    )
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
