"""What the usage journal adds to each metered request: one record appended, against the
ledger's own work on the same record without a journal (pricing it and keeping it).

    .venv/bin/python benchmarks/usage_journal.py [--records 20000] [--runs 7]

Prints the median and range of microseconds per record over the runs, for: the ledger's
record() without a journal, with one (json line + write() to the page cache), and the
journal's append alone. The journal's directory is a temporary one on the same disk as
the default ($AISERVICE_HOME/usage-journal).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from functools import partial
from pathlib import Path

from aiservice.metering.journal import UsageJournal
from aiservice.metering.ledger import UsageLedger, table_row
from aiservice.metering.meter import Meter
from aiservice.metering.pricing import PriceList
from aiservice.settings import Settings


class NoStore:
    async def insert_many(self, rows):  # never called: no flush during a run
        raise AssertionError


def a_meter() -> Meter:
    meter = Meter("/v1/chat/completions", "req_" + "b" * 32)
    meter.owner, meter.key_id = "usr_" + "u" * 20, "key_" + "k" * 20
    meter.requested("gpt-4o-mini", {"feature": "classify_email"})
    meter.model_served, meter.input_tokens, meter.output_tokens = "gpt-4o-mini", 120, 40
    return meter


def per_record_us(work, records: int) -> float:
    started = time.perf_counter()
    for _ in range(records):
        work()
    return (time.perf_counter() - started) / records * 1e6


async def main(records: int, runs: int) -> None:
    meter = a_meter()
    rows: dict[str, list[float]] = {"ledger, no journal": [], "ledger + journal": [], "append": []}
    with tempfile.TemporaryDirectory() as directory:
        for _ in range(runs):
            plain = UsageLedger(NoStore(), PriceList(Settings()))  # type: ignore[arg-type]
            rows["ledger, no journal"].append(
                per_record_us(partial(plain.record, meter, 200), records)
            )
            journaled = UsageLedger(NoStore(), PriceList(Settings()))  # type: ignore[arg-type]
            journaled._journal = UsageJournal(Path(directory))
            rows["ledger + journal"].append(
                per_record_us(partial(journaled.record, meter, 200), records)
            )
            row = table_row(plain.priced(meter, 200))
            journal = journaled._journal
            rows["append"].append(per_record_us(partial(journal.append, row), records))
            journal.close(everything_written=True)
    print(f"{'µs per record':<22}{'median':>8}{'min':>8}{'max':>8}   ({runs} runs of {records})")
    for name, values in rows.items():
        print(f"{name:<22}{statistics.median(values):>8.2f}{min(values):>8.2f}{max(values):>8.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=7)
    arguments = parser.parse_args()
    asyncio.run(main(arguments.records, arguments.runs))
