"""Dashboard pages on PostgreSQL at 1,000,000 stored completions: render time and the SQL behind.

Proves (or refutes) "with 1,000,000 stored completions on PostgreSQL, every dashboard page
renders in < 150 ms p95 on this machine, never counts all rows to paginate, never sends more
than one page of rows".

Seeding (dashboard_db.py; skipped with --reuse when the database is already seeded): drops
and re-creates --database on --server, migrates it with the server's own `upgrade_database`,
creates 20 users and their keys through `Accounts` (what `aiservice users add` / `keys create`
use), then --rows stored completions (half of them one heavy user's, over the last 90 days),
their metadata rows, as many usage records, --rows / 20 responses, a few batches, analyses and
budgets, with `INSERT ... SELECT ... FROM generate_series`; then VACUUM ANALYZE.

Timing: `aiservice serve --no-worker` on a free port (AISERVICE_DATABASE_URL, a master key,
retention 180 days so nothing seeded expires), signed in to /dashboard/login twice: as admin
(master key) and as the heavy user (their API key). Every case below is --warmup requests, then
--requests timed requests (one httpx.Client per person, one request at a time): request log
filters, pages 2 and 20 by following rel="next", one request's page, usage grouped four ways
over 30 days, budgets, keys, jobs, health. "rows" counts the <tr> with <td> cells (or the
data-row attributes) of the page. Target: p95 < 150 ms (exit status 1 if one is missed).

SQL: the server is started again with, for this database only (ALTER DATABASE ... SET, reset at
the end), log_min_duration_statement = 0 and auto_explain (log_analyze, JSON plans), and every
case is requested twice more; the statements are read back from the PostgreSQL server log
(--pg-log: pg_stat_statements would need shared_preload_libraries, a restart of the server).
Checks: no count over chat_completions / their metadata / responses sees more than 1,001 rows
(the store's selectivity probe stops at 1,000), and no statement on those tables or
usage_records returns more rows than the page shows + 1. The slowest statements are listed;
for a page that misses its target, its slowest statement is run again under EXPLAIN (ANALYZE,
BUFFERS), in a transaction rolled back.

    .venv/bin/python benchmarks/dashboard.py                 # seed 1,000,000 rows, measure
    .venv/bin/python benchmarks/dashboard.py --reuse         # measure the seeded database again
    .venv/bin/python benchmarks/dashboard.py --rows 100000   # a smaller database, quicker
    .venv/bin/python benchmarks/dashboard.py --probe         # does /dashboard/login answer 200?
"""

from __future__ import annotations

import argparse
import asyncio
import html
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.cookies import SimpleCookie
from pathlib import Path
from urllib.parse import urlencode, urljoin

import asyncpg
import httpx
from rich.console import Console
from rich.table import Table

from dashboard_db import (
    COUNTED_TABLES,
    DAY,
    MODELS,
    RETENTION_DAYS,
    Captured,
    People,
    fmt_time,
    parse_log,
    prepare,
    sample_ids,
    set_capture,
    with_params,
)

console = Console(width=None if sys.stdout.isatty() else 180)

TARGET_P95_MS = 150.0
MASTER_KEY = "sk-bench-dashboard-master-key"
SESSION_COOKIE, CSRF_COOKIE = "aiservice_session", "aiservice_login_csrf"
END_USER = "user-04242"  # the metadata user_id filtered on: ~100 rows of 1,000,000
LISTED_TABLES = COUNTED_TABLES | {"usage_records"}
SERVER_COMMAND = [sys.executable, "-m", "aiservice"]


# --- the server and its pages -------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """`aiservice serve --no-worker` on a free port and a throwaway home."""

    def __init__(self, url: str | None, home: Path, name: str):
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.upper().startswith("AISERVICE_") and k.upper() != "DATABASE_URL"
        }
        env |= {
            "AISERVICE_HOME": str(home),
            "AISERVICE_MASTER_KEY": MASTER_KEY,
            "AISERVICE_RETENTION_DAYS": str(RETENTION_DAYS),
            "AISERVICE_LOG_LEVEL": "WARNING",
        }
        if url:
            env["AISERVICE_DATABASE_URL"] = url
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        self.log = home / f"{name}.log"
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [*SERVER_COMMAND, "serve", "--port", str(port), "--no-worker"],
                env=env, stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip

    def wait(self, path: str = "/ready", timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited early:\n{self.tail()}")
            try:
                if httpx.get(self.url + path, timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"server not ready in {timeout} s:\n{self.tail()}")

    def tail(self, size: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-size:]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


_ATTRIBUTE = re.compile(r"""([\w:-]+)\s*=\s*(?:"([^"]*)"|'([^']*)')""")
_ROW = re.compile(r"<tr\b[^>]*>(.*?)</tr>", re.S | re.I)


def tags(body: str, *names: str) -> list[dict[str, str]]:
    """The attributes of every <name ...> tag of `body`."""
    found = []
    for tag in re.findall(rf"<(?:{'|'.join(names)})\b[^>]*>", body, re.I):
        found.append({k.lower(): html.unescape(a or b) for k, a, b in _ATTRIBUTE.findall(tag)})
    return found


def rows_shown(body: str) -> int:
    marked = len(re.findall(r"\bdata-row\b", body))
    return marked or sum(1 for row in _ROW.findall(body) if "<td" in row.lower())


def next_link(body: str) -> str | None:
    for attrs in tags(body, "a", "link"):
        if "next" in attrs.get("rel", "").lower().split() and attrs.get("href"):
            return attrs["href"]
    return None


def cookies_of(response: httpx.Response) -> dict[str, str]:
    jar: SimpleCookie = SimpleCookie()
    for header in response.headers.get_list("set-cookie"):
        jar.load(header)
    return {name: morsel.value for name, morsel in jar.items()}


def sign_in(base_url: str, **credentials: str) -> httpx.Client:
    """A client signed in to the dashboard; the session cookie is sent by hand (a cookie set
    `Secure` would not be sent over plain HTTP by the cookie jar)."""
    client = httpx.Client(base_url=base_url, timeout=60, follow_redirects=False)
    form = client.get("/dashboard/login")
    if form.status_code != 200:
        raise LookupError(f"GET /dashboard/login answered {form.status_code}")
    fields = {t["name"]: t.get("value", "") for t in tags(form.text, "input") if "name" in t}
    csrf = cookies_of(form).get(CSRF_COOKIE)
    if not fields.get("csrf_token") or fields["csrf_token"] != csrf:
        raise RuntimeError(f"csrf_token field {fields.get('csrf_token')!r} != cookie {csrf!r}")
    client.cookies.clear()
    reply = client.post(
        "/dashboard/login",
        data={"csrf_token": csrf, **credentials},
        headers={"Cookie": f"{CSRF_COOKIE}={csrf}", "Origin": base_url},
    )
    session = cookies_of(reply).get(SESSION_COOKIE)
    if reply.status_code != 303 or not session:
        raise RuntimeError(f"sign-in answered {reply.status_code}, cookies {cookies_of(reply)}")
    client.cookies.clear()
    client.headers["Cookie"] = f"{SESSION_COOKIE}={session}"
    return client


def follow(client: httpx.Client, path: str, page: int) -> str | None:
    """The path of page `page` of a list, by following its rel="next" links from `path`."""
    for _ in range(page - 1):
        href = next_link(client.get(path).text)
        if href is None:
            return None
        path = urljoin(path, href)
    return path


# --- the cases ----------------------------------------------------------------------------


@dataclass
class Case:
    page: str
    filter: str
    who: str
    paths: list[str]  # requested in turn
    expect: int = 200  # the HTTP status it should answer
    samples: list[float] = field(default_factory=list)
    sizes: list[int] = field(default_factory=list)
    rows: list[int] = field(default_factory=list)
    statuses: set[int] = field(default_factory=set)
    sql: list[Captured] = field(default_factory=list)
    sql_requests: int = 0


def day(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d")


def request_filters(people: People) -> dict[str, list[tuple[str, dict[str, str]]]]:
    at = people.seeded_at
    common = [
        ("no filter", {}),
        (f"model={MODELS[2]} (10 %)", {"model": MODELS[2]}),
        (f"metadata user_id={END_USER}", {"metadata_key": "user_id", "metadata_value": END_USER}),
        ("feature=reply", {"feature": "reply"}),
        (f"since={day(at - 7 * DAY)} (7 days)", {"since": day(at - 7 * DAY)}),
        (f"until={day(at - 60 * DAY)} (60 days ago)", {"until": day(at - 60 * DAY)}),
        ("status=failed", {"status": "failed"}),
        ("kind=response", {"kind": "response"}),
    ]
    admin = [
        ("user=<heavy user>", {"user": people.users[0]}),
        ("key=<heavy user's dev key>", {"key": people.dev_key}),
        ("key=<user01's key>", {"key": people.keys[1]}),
    ]
    return {"heavy user": common, "admin": common + admin}


def build_cases(clients: dict[str, httpx.Client], people: People, ids: tuple) -> list[Case]:
    completions, responses = ids
    cases = []
    for who, filters in request_filters(people).items():
        for name, params in filters:
            path = "/dashboard/requests" + (f"?{urlencode(params)}" if params else "")
            cases.append(Case("requests", name, who, [path]))
        for page in (2, 20):
            path = follow(clients[who], "/dashboard/requests", page)
            cases.append(Case("requests", f"page {page} (rel=next)", who, [path] if path else []))
        cases.append(Case("requests/{id}", "a completion (50 ids)", who,
                          [f"/dashboard/requests/{i}" for i in completions]))  # fmt: skip
        cases.append(Case("requests/{id}", "a response (20 ids)", who,
                          [f"/dashboard/requests/{i}" for i in responses]))  # fmt: skip
        window = {"since": day(people.seeded_at - 30 * DAY), "until": day(people.seeded_at)}
        for group in ("model", "feature", "user", "endpoint"):
            query = urlencode({**window, "group": group})
            cases.append(
                Case("usage", f"30 days, group={group}", who, [f"/dashboard/usage?{query}"])
            )
        for page in ("budgets", "keys", "jobs", "health"):
            refused = page == "health" and who != "admin"  # admins only
            name, expect = ("admins only: 403 expected", 403) if refused else ("", 200)
            cases.append(Case(page, name, who, [f"/dashboard/{page}"], expect))
    return cases


def measure(case: Case, client: httpx.Client, warmup: int, requests: int) -> None:
    for index in range(warmup + requests if case.paths else 0):
        path = case.paths[index % len(case.paths)]
        started = time.perf_counter()
        reply = client.get(path)
        body = reply.content
        elapsed = (time.perf_counter() - started) * 1000
        if index >= warmup:
            case.samples.append(elapsed)
            case.sizes.append(len(body))
            case.rows.append(rows_shown(reply.text))
            case.statuses.add(reply.status_code)


def capture(args: argparse.Namespace, url: str, people: People, cases: list[Case]) -> bool:
    """Request every case twice more on a server whose connections log each statement's plan,
    and keep what the log says about them. False if that could not be done."""
    log = Path(args.pg_log)
    if not os.access(log, os.R_OK):
        console.print(f"[yellow]{log} is not readable: no SQL captured[/yellow]")
        return False
    admin_dsn = f"{args.server.rstrip('/')}/postgres"
    asyncio.run(set_capture(admin_dsn, args.database, True))
    try:
        with tempfile.TemporaryDirectory() as home:
            server = Server(url, Path(home), "capture")
            try:
                server.wait()
                capture_cases(sign_in_both(server.url, people), log, args.database, cases)
            except (RuntimeError, httpx.HTTPError) as exc:
                console.print(f"[yellow]no SQL captured: {exc}[/yellow]\n{server.tail()}")
                return False
            finally:
                server.stop()
    finally:
        asyncio.run(set_capture(admin_dsn, args.database, False))
    return True


def capture_cases(
    clients: dict[str, httpx.Client], log: Path, database: str, cases: list[Case]
) -> None:
    for case in cases:
        client = clients[case.who]
        for path in case.paths[:1]:
            client.get(path)  # not captured: caches, first plans
            start = log.stat().st_size
            for _ in range(2):
                client.get(path)
            time.sleep(0.3)
            with log.open("rb") as file:
                file.seek(start)
                chunk = file.read().decode("utf-8", "replace")
            case.sql, case.sql_requests = parse_log(chunk, database), 2


def sign_in_both(base_url: str, people: People) -> dict[str, httpx.Client]:
    return {
        "heavy user": sign_in(base_url, api_key=people.heavy_secret),
        "admin": sign_in(base_url, api_key=MASTER_KEY),
    }


# --- the report ---------------------------------------------------------------------------


def percentile(values: list[float], cut: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[cut - 1]


def passed(case: Case) -> bool:
    ok = bool(case.samples) and case.statuses == {case.expect}
    return ok and percentile(case.samples, 95) < TARGET_P95_MS


def sql_columns(case: Case) -> list[str]:
    """Statements per request, their time per request, the slowest one, and the most rows one
    statement on the big tables returned (GROUP BY totals apart)."""
    if not case.sql_requests:
        return ["", "", "", ""]
    slowest = max((s.ms for s in case.sql), default=0.0)
    listed = [s.rows for s in case.sql if s.relations & LISTED_TABLES and not s.grouped]
    return [f"{len(case.sql) / case.sql_requests:.0f}",
            f"{sum(s.ms for s in case.sql) / case.sql_requests:.1f}", f"{slowest:.1f}",
            str(max(listed, default=0))]  # fmt: skip


def report(cases: list[Case], args: argparse.Namespace) -> bool:
    title = (f"Dashboard pages, {args.requests} timed requests each after {args.warmup} "
             f"warm-up, target p95 < {TARGET_P95_MS:.0f} ms")  # fmt: skip
    caption = ("stmts, SQL ms (per request), slowest (one statement), rows/stmt (the most one "
               "returned): from the second pass, auto_explain with ANALYZE on")  # fmt: skip
    table = Table(title=title, caption=caption)
    for name in ("page", "filter", "who", "HTTP", "p50 ms", "p95 ms", "max ms", "bytes", "rows",
                 "stmts", "SQL ms", "slowest", "rows/stmt", "result"):  # fmt: skip
        table.add_column(name, justify="left" if name in ("page", "filter", "who") else "right")
    all_ok = True
    for case in cases:
        ok = passed(case)
        all_ok &= ok
        if not case.samples:
            table.add_row(case.page, case.filter, case.who, "-", *[""] * 9, verdict(False))
            continue
        table.add_row(
            case.page, case.filter, case.who, ",".join(map(str, sorted(case.statuses))),
            f"{percentile(case.samples, 50):.1f}", f"{percentile(case.samples, 95):.1f}",
            f"{max(case.samples):.1f}", f"{statistics.mean(case.sizes):,.0f}",
            f"{min(case.rows)}-{max(case.rows)}" if min(case.rows) != max(case.rows)
            else str(case.rows[0]), *sql_columns(case),
            verdict(ok),
        )  # fmt: skip
    console.print(table)
    return all_ok


def short(text: str, length: int) -> str:
    return " ".join(text.split())[:length]


def verdict(ok: bool) -> str:
    return "[green]PASS[/green]" if ok else "[red]FAIL[/red]"


def slowest_statements(cases: list[Case], shown: int = 12) -> None:
    by_text: dict[str, list[tuple[Captured, Case]]] = {}
    for case in cases:
        for statement in case.sql:
            by_text.setdefault(statement.text, []).append((statement, case))
    table = Table(title="Slowest statements (auto_explain, ANALYZE timing on)")
    for name in ("max ms", "mean ms", "calls", "max rows", "pages", "SQL"):
        table.add_column(name, justify="left" if name in ("pages", "SQL") else "right")
    ranked = sorted(by_text.items(), key=lambda item: -max(s.ms for s, _ in item[1]))
    for text, seen in ranked[:shown]:
        pages = sorted({f"{c.page} {c.filter}".strip() for _, c in seen})
        table.add_row(
            f"{max(s.ms for s, _ in seen):.1f}", f"{statistics.mean(s.ms for s, _ in seen):.1f}",
            str(len(seen)), str(max(s.rows for s, _ in seen)),
            "; ".join(pages[:3]) + (f" (+{len(pages) - 3})" if len(pages) > 3 else ""),
            short(text, 220),
        )  # fmt: skip
    console.print(table)


def sql_checks(cases: list[Case]) -> bool:
    """No count() over the big tables sees more than 1,001 rows; no statement on them returns
    more than a page (+1, to know there is a next one). True if both hold."""
    counts = [(s, c) for c in cases for s in c.sql if s.counted]
    most = max((s.counted for s, _ in counts), default=0)
    too_many = {(s.text, c.page, c.filter, c.who): (s, c) for s, c in counts if s.counted > 1001}
    console.print(f"count() over {', '.join(sorted(COUNTED_TABLES))}: {len(counts)} statement(s)"
                  f", at most {most:,} rows counted: {verdict(not too_many)}")  # fmt: skip
    over = {(s.text, c.page, c.filter, c.who): (s, c) for c in cases for s in c.sql
            if s.relations & LISTED_TABLES and not s.grouped
            and s.rows > max(c.rows, default=0) + 1}  # fmt: skip
    grouped = max((s.rows for c in cases for s in c.sql if s.grouped), default=0)
    console.print(f"statements on {', '.join(sorted(LISTED_TABLES))} returning more rows than "
                  f"the page shows + 1 (GROUP BY totals apart: at most {grouped:,} rows, the "
                  f"usage charts): {len(over)}: {verdict(not over)}")  # fmt: skip
    for statement, case in [*too_many.values(), *over.values()][:10]:
        console.print(f"  {case.page} {case.filter} ({case.who}): {statement.rows:,} rows, "
                      f"{statement.counted:,} counted, page shows {max(case.rows, default=0)}: "
                      f"{short(statement.text, 300)}", highlight=False)  # fmt: skip
    return not too_many and not over


async def explain_slow(dsn: str, cases: list[Case]) -> None:
    """EXPLAIN (ANALYZE, BUFFERS) of the slowest statement of each page that missed its target."""
    connection = await asyncpg.connect(dsn)
    try:
        for case in cases:
            if passed(case) or not case.sql:
                continue
            slowest = max(case.sql, key=lambda s: s.ms)
            query = with_params(slowest.text, slowest.params)
            console.rule(f"{case.page} {case.filter} ({case.who}): slowest statement, "
                         f"{slowest.ms:.1f} ms")  # fmt: skip
            console.print(query, highlight=False, soft_wrap=True)
            transaction = connection.transaction()  # rolled back: a write is not kept
            await transaction.start()
            try:
                plan = await connection.fetch(f"EXPLAIN (ANALYZE, BUFFERS) {query}")
                console.print("\n".join(r[0] for r in plan), highlight=False, soft_wrap=True)
            except asyncpg.PostgresError as exc:
                console.print(f"[yellow]EXPLAIN failed: {exc}[/yellow]")
            finally:
                await transaction.rollback()
    finally:
        await connection.close()


# --- main -----------------------------------------------------------------------------------


def probe() -> int:
    """Whether GET /dashboard/login answers 200 on a server of the current tree (SQLite)."""
    with tempfile.TemporaryDirectory() as home:
        server = Server(None, Path(home), "probe")
        try:
            server.wait("/health", timeout=120)
            status = httpx.get(server.url + "/dashboard/login", timeout=10).status_code
        finally:
            server.stop()
    console.print(f"GET /dashboard/login: {status}")
    return 0 if status == 200 else 3


def time_pages(args: argparse.Namespace, url: str, people: People, ids: tuple) -> list[Case]:
    with tempfile.TemporaryDirectory() as home:
        server = Server(url, Path(home), "server")
        try:
            started = time.perf_counter()
            server.wait()
            console.print(f"server ready in {time.perf_counter() - started:.1f} s")
            try:
                clients = sign_in_both(server.url, people)
            except RuntimeError:
                console.print(server.tail())
                raise
            cases = build_cases(clients, people, ids)
            console.print(f"timing {len(cases)} cases ...")
            for case in cases:
                measure(case, clients[case.who], args.warmup, args.requests)
        finally:
            server.stop()
    return cases


def run(args: argparse.Namespace) -> int:
    dsn, url, people = asyncio.run(prepare(args))
    ids = asyncio.run(sample_ids(dsn, people))
    load_before = os.getloadavg()[0]
    try:
        cases = time_pages(args, url, people, ids)
    except LookupError as exc:
        console.print(f"[red]{exc}: the dashboard is not there yet[/red]")
        return 3
    load_after = os.getloadavg()[0]
    captured_sql = not args.no_sql and capture(args, url, people, cases)
    ok = report(cases, args)
    if captured_sql:
        slowest_statements(cases)
        ok &= sql_checks(cases)
        asyncio.run(explain_slow(dsn, cases))
    console.print(
        f"database {args.database} seeded {fmt_time(people.seeded_at)}; {os.cpu_count()} CPUs, "
        f"load average {load_before:.2f} before timing, {load_after:.2f} after",
        highlight=False,
    )
    return 0 if ok else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--server",
        default=os.environ.get("BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432"),
        help="PostgreSQL server (a superuser: it sets logging for the database); env "
        "BENCH_POSTGRES",
    )
    parser.add_argument("--database", default="aiservice_bench_dashboard")
    parser.add_argument("--reuse", action="store_true", help="keep a seeded database as it is")
    parser.add_argument("--rows", type=int, default=1_000_000, help="stored completions")
    parser.add_argument("--warmup", type=int, default=5, help="requests per case, not timed")
    parser.add_argument("--requests", type=int, default=30, help="timed requests per case")
    parser.add_argument("--pg-log", default="/var/log/postgresql/postgresql-15-main.log")
    parser.add_argument("--no-sql", action="store_true", help="skip capturing the SQL")
    parser.add_argument("--probe", action="store_true", help="only: is the dashboard there?")
    args = parser.parse_args()
    return probe() if args.probe else run(args)


if __name__ == "__main__":
    sys.exit(main())
