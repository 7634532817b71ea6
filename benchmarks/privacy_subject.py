"""Export and erasure of one large data subject: time and peak memory, by subject size.

For each backend (SQLite in a temporary directory; PostgreSQL on `--postgres ADMIN_DSN`, a
database created for the run and dropped after) and each size in `--sizes` (default 10,000 and
100,000 rows), a fresh migrated database gets the subject's rows written straight in
(aiservice.testing.subject_seed: 40 % stored chat completions with their metadata rows, 60 %
usage records, all with metadata user_id=42) and 10,000 rows of another subject beside them.
Then, in this process, on the services the server uses:

  export   `PrivacyExport` streamed to /dev/null: wall time, lines, and the peak of Python
           allocations while it ran (tracemalloc, in a second pass: tracing slows it down);
  erase    the erasure job (`PrivacyErasures.start` + `run_until_done`, batches of
           `privacy_erase_batch`, default 500): wall time, the longest single batch
           transaction (how long it held its row locks), rows per second, and its tracemalloc
           peak on a second, identical database.

Checks (exit status 1 if one fails): the export's summary counts every subject row and nothing
else; after the erasure, no row of the subject is left, the other subject's rows are all there,
and the ledger's token and cost totals are what they were. Targets: the peak memory of an
export and an erasure does not grow with the subject (100,000 rows within 2x of 10,000).

    .venv/bin/python benchmarks/privacy_subject.py
    .venv/bin/python benchmarks/privacy_subject.py --sizes 100000 --no-postgres
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

import asyncpg
from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from aiservice.governance.audit import AuditLog
from aiservice.services.privacy_erase import build_erasures
from aiservice.services.privacy_export import PrivacyExport
from aiservice.services.privacy_subject import PrivacyRequest, SubjectSpec
from aiservice.settings import Settings
from aiservice.store.audit import AuditStore
from aiservice.store.database import Database
from aiservice.store.migrate import upgrade_database
from aiservice.store.subjects import Subject
from aiservice.store.tables import StoredCompletion, UsageRecord
from aiservice.testing.subject_seed import seed_subject

OWNER, OTHER_ROWS = "user_bench", 10_000
SUBJECT = Subject("metadata", key="user_id", value="42")


async def fresh_database(backend: str, admin_dsn: str, workdir: Path) -> tuple[str, Any]:
    """A migrated empty database; returns its URL and a coroutine function that drops it."""
    if backend == "sqlite":
        path = workdir / f"{secrets.token_hex(4)}.db"
        url = f"sqlite+aiosqlite:///{path}"

        async def drop() -> None:
            path.unlink(missing_ok=True)
    else:
        name = f"aiservice_bench_{secrets.token_hex(4)}"
        connection = await asyncpg.connect(admin_dsn)
        await connection.execute(f'CREATE DATABASE "{name}"')
        await connection.close()
        url = make_url(admin_dsn).set(drivername="postgresql+asyncpg", database=name)
        url = url.render_as_string(hide_password=False)

        async def drop() -> None:
            admin = await asyncpg.connect(admin_dsn)
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await admin.close()

    await asyncio.to_thread(upgrade_database, url)
    return url, drop


async def seeded(url: str, size: int) -> Database:
    database = Database(url)
    completions = size * 4 // 10
    await seed_subject(database, OWNER, "user_id", "42", completions, size - completions)
    await seed_subject(database, OWNER, "user_id", "7", OTHER_ROWS // 2, OTHER_ROWS // 2)
    return database


async def totals(database: Database) -> tuple[int, int, float]:
    async with database.sessions() as session:
        query = select(
            func.sum(UsageRecord.input_tokens),
            func.sum(UsageRecord.output_tokens),
            func.sum(UsageRecord.cost_usd),
        )
        row = (await session.execute(query)).one()
    return int(row[0]), int(row[1]), round(row[2], 6)


async def rows_left(database: Database, value: str) -> int:
    async with database.sessions() as session:
        completions = await session.scalar(
            select(func.count())
            .select_from(StoredCompletion)
            .where(StoredCompletion.metadata_["user_id"].as_string() == value)
        )
        usage = await session.scalar(
            select(func.count())
            .select_from(UsageRecord)
            .where(UsageRecord.metadata_["user_id"].as_string() == value)
        )
    return int(completions or 0) + int(usage or 0)


async def export_once(database: Database, traced: bool) -> tuple[float, int, float, dict]:
    job = PrivacyExport(database, SUBJECT)
    if traced:
        tracemalloc.start()
    started, lines = time.perf_counter(), 0
    with open("/dev/null", "wb") as sink:
        async for line in job.lines():
            sink.write(line)
            lines += 1
    elapsed = time.perf_counter() - started
    peak = tracemalloc.get_traced_memory()[1] / 2**20 if traced else 0.0
    if traced:
        tracemalloc.stop()
    return elapsed, lines, peak, job.counts


async def erase_once(database: Database, home: Path, traced: bool) -> dict[str, Any]:
    settings = Settings(home=home)
    erasures = build_erasures(settings, database, AuditLog(AuditStore(database)))
    longest = 0.0
    advance = erasures.store.advance

    async def timed_advance(*args: Any, **kwargs: Any) -> Any:
        nonlocal longest
        began = time.perf_counter()
        try:
            return await advance(*args, **kwargs)
        finally:
            longest = max(longest, time.perf_counter() - began)

    erasures.store.advance = timed_advance  # type: ignore[method-assign]
    if traced:
        tracemalloc.start()
    started = time.perf_counter()
    view = await erasures.start(
        PrivacyRequest(subject=SubjectSpec(metadata={"user_id": "42"})), None
    )
    row = await erasures.run_until_done(view["id"])
    elapsed = time.perf_counter() - started
    peak = tracemalloc.get_traced_memory()[1] / 2**20 if traced else 0.0
    if traced:
        tracemalloc.stop()
    assert row is not None and row.status == "completed"
    return {"seconds": elapsed, "longest_tx_ms": longest * 1000, "peak_mib": peak,
            "deleted": dict(row.deleted)}  # fmt: skip


async def measure(backend: str, size: int, admin_dsn: str, workdir: Path) -> dict[str, Any]:
    url, drop = await fresh_database(backend, admin_dsn, workdir)
    database = await seeded(url, size)
    try:
        before = await totals(database)
        export_s, lines, _, counts = await export_once(database, traced=False)
        _, _, export_peak, _ = await export_once(database, traced=True)
        erase = await erase_once(database, workdir, traced=False)
        ok = (
            sum(counts.values()) == size
            and await rows_left(database, "42") == 0
            and await rows_left(database, "7") == OTHER_ROWS
            and await totals(database) == before
            and sum(erase["deleted"].values()) == size
        )
    finally:
        await database.close()
        await drop()
    url, drop = await fresh_database(backend, admin_dsn, workdir)
    database = await seeded(url, size)
    try:
        traced = await erase_once(database, workdir, traced=True)
    finally:
        await database.close()
        await drop()
    return {
        "backend": backend, "rows": size, "export_s": export_s, "export_lines": lines,
        "export_rows_per_s": size / export_s, "export_peak_mib": export_peak,
        "erase_s": erase["seconds"], "erase_rows_per_s": size / erase["seconds"],
        "erase_longest_tx_ms": erase["longest_tx_ms"], "erase_peak_mib": traced["peak_mib"],
        "checks": ok,
    }  # fmt: skip


def print_table(results: list[dict[str, Any]]) -> None:
    header = (
        f"{'backend':<9}{'rows':>9}{'export s':>10}{'rows/s':>9}{'peak MiB':>10}"
        f"{'erase s':>9}{'rows/s':>9}{'max tx ms':>11}{'peak MiB':>10}  checks"
    )
    print(header)
    for r in results:
        print(
            f"{r['backend']:<9}{r['rows']:>9,}{r['export_s']:>10.2f}{r['export_rows_per_s']:>9,.0f}"
            f"{r['export_peak_mib']:>10.1f}{r['erase_s']:>9.2f}{r['erase_rows_per_s']:>9,.0f}"
            f"{r['erase_longest_tx_ms']:>11.1f}{r['erase_peak_mib']:>10.1f}  "
            f"{'ok' if r['checks'] else 'FAILED'}"
        )


def memory_flat(results: list[dict[str, Any]]) -> bool:
    """The largest subject's peaks within 2x of the smallest's, per backend."""
    flat = True
    for backend in {r["backend"] for r in results}:
        runs = sorted((r for r in results if r["backend"] == backend), key=lambda r: r["rows"])
        if len(runs) > 1:
            for peak in ("export_peak_mib", "erase_peak_mib"):
                flat &= runs[-1][peak] <= 2 * max(runs[0][peak], 1.0)
    return flat


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    sizes = [int(size) for size in args.sizes.split(",")]
    backends = ["sqlite"] if args.no_postgres else ["sqlite", "postgres"]
    results = []
    with tempfile.TemporaryDirectory() as workdir:
        for backend in backends:
            for size in sizes:
                results.append(await measure(backend, size, args.postgres, Path(workdir)))
                print(f"{backend} {size:,} rows done", file=sys.stderr)
    print()
    print_table(results)
    flat = memory_flat(results)
    print(f"\npeak memory independent of the subject's size (100k within 2x of 10k): "
          f"{'PASS' if flat else 'FAIL'}")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0 if flat and all(r["checks"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
