"""Fuzz a real server against its own OpenAPI document, many examples per operation.

    .venv/bin/python benchmarks/fuzz.py                    # 200 positive + 66 negative each
    .venv/bin/python benchmarks/fuzz.py --examples 30 --only /v1/chat

Starts `aiservice serve` (a temporary home, the embedded models), makes a user with a key,
and fuzzes every operation of the admins' document with the master key, then every operation
of the public document with the user's key (tests/fuzz_support.py: the checks, and how the
generated bodies are steered). Prints one row per operation — cases, the statuses seen, the
failures — then each failure, and exits 1 if there was one. The same as
tests/api/test_openapi_fuzz.py, with more examples and fresh random data on every run.
"""

from __future__ import annotations

import argparse
import signal
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the tests' helpers: a real server, the fuzzer

from fuzz_support import OperationReport, fuzz_operation, load_schema, operations  # noqa: E402
from support import MASTER_KEY, bearer, start_server, stop_server  # noqa: E402
from usage_support import new_account  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=200, help="positive cases per operation")
    parser.add_argument("--only", default="", help="only the operations whose label has this")
    parser.add_argument(
        "--why", action="store_true", help="also print each operation's refusals and slowest case"
    )
    args = parser.parse_args()
    # SIGTERM ends the run through `finally`, so the server is stopped too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    reports: list[tuple[str, OperationReport]] = []
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="aiservice-fuzz-") as home:
        server = start_server(Path(home))
        try:
            user_key = new_account(server, "fuzz").key
            for caller, key in (("master", MASTER_KEY), ("user", user_key)):
                headers = bearer(key)
                document = httpx.get(f"{server.base_url}/openapi.json", headers=headers).json()
                schema = load_schema(document, server.base_url)
                for operation in operations(schema):
                    if args.only in operation.label:
                        report = fuzz_operation(
                            operation, headers, args.examples, derandomize=False
                        )
                        reports.append((caller, report))
                        print(_row(caller, report), flush=True)
                        if args.why:
                            _explain(report)
        finally:
            stop_server(server)
    failures = [(caller, f) for caller, report in reports for f in report.failures]
    print(
        f"\n{len(reports)} operations, {sum(r.cases for _, r in reports)} cases, "
        f"{len(failures)} failures in {time.perf_counter() - started:.0f} s"
    )
    for caller, failure in failures:
        print(f"\n[{caller}] {failure}")
    return 1 if failures else 0


def _explain(report: OperationReport) -> None:
    for refusal, count in report.refusals.most_common(5):
        print(f"    {count} x {refusal}")
    print(f"    slowest {report.slowest[0]:.2f} s: {report.slowest[1][:200]}")


def _row(caller: str, report: OperationReport) -> str:
    return (
        f"| {caller} | `{report.label}` | {report.cases} | {report.status_summary()} | "
        f"{len(report.failures)} | {report.seconds:.1f} |"
    )


if __name__ == "__main__":
    print("| caller | operation | cases | statuses seen | failures | s |")
    print("|---|---|---|---|---|---|")
    sys.exit(main())
