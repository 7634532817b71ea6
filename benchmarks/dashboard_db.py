"""The database side of benchmarks/dashboard.py (run that script, not this module): seeding
the database, and reading back from the PostgreSQL server log the statements the server ran.

Drops and re-creates the database --database on --server, migrates it with the server's own
`upgrade_database`, creates 20 users with one API key each (the heavy user two: "prod", "dev")
through `Accounts`, the service `aiservice users add` / `keys create` use, then writes with SQL,
`INSERT ... SELECT ... FROM generate_series` (the secondary indexes dropped first and rebuilt
after, as pg_indexes defines them):

  chat_completions    --rows (1,000,000): half of them the heavy user's (80 % on key "prod",
                      20 % on "dev"), the rest over 19 users; created over the last 90 days in
                      seq order; models gpt-4o-mini 60 %, gpt-4o 30 %, smollm2-135m-instruct
                      10 %; a ~200-character user message and a ChatCompletion body with a
                      ~300-character answer; metadata {feature: one of 6, user_id: one of
                      10,000}, both pairs also in chat_completion_metadata; key_id, request_id
  usage_records       one per completion (same request_id, owner, key, model, day), 97 % 200,
                      2 % 429, 1 % 500; plus one per finished response (route /v1/responses)
  responses           --rows / 20: 20 % background (the newest queued / in_progress, 5 %
                      failed), 2 % of the others failed
  batches, document_analyses, budgets   a few rows each
  usage_daily         the usage records' daily rollup, computed again from them (the SQL
                      above writes around the store that keeps it); then VACUUM ANALYZE
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import re
import sys
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
from rich.console import Console

from aiservice.governance.accounts import Accounts, Principal
from aiservice.governance.audit import AuditLog, acting_as, cli_actor
from aiservice.store.accounts import AccountStore
from aiservice.store.audit import AuditStore
from aiservice.store.database import Database
from aiservice.store.migrate import upgrade_database
from aiservice.store.usage import UsageStore

console = Console(width=None if sys.stdout.isatty() else 160)

DAY = 86_400
SPAN = 90 * DAY  # created_at: the last 90 days
RETENTION_DAYS = 180  # expires_at = created + this: nothing seeded expires while measured
CHUNK = 100_000  # rows per INSERT ... SELECT
USERS = 20  # [0] the heavy user, half of all rows
MODELS = ("gpt-4o-mini", "gpt-4o", "smollm2-135m-instruct")
FEATURES = ("summarize", "reply", "classify", "extract", "translate", "triage")
COUNTED_TABLES = {"chat_completions", "chat_completion_metadata", "responses"}
CAPTURE_SETTINGS = {  # for this database only, while the SQL is captured
    "log_min_duration_statement": "0",
    "session_preload_libraries": "auto_explain",
    "auto_explain.log_min_duration": "0",
    "auto_explain.log_analyze": "on",
    "auto_explain.log_format": "json",
}
SEEDED_TABLES = ("chat_completions", "chat_completion_metadata", "usage_records", "responses")
_VOCABULARY = (
    "the a of to and in is it that for on with as this was be by are not from or at have an "
    "order invoice customer ticket refund shipping account password reset delivery product "
    "support please thanks could would should issue error update status request summary "
    "classify extract reply label priority urgent normal low high email message week today "
    "payment card address change cancel subscription plan upgrade billing question answer"
)
_WORDS = _VOCABULARY.split()


def texts(rng: random.Random, count: int, low: int, high: int) -> list[str]:
    out = []
    for _ in range(count):
        target, words = rng.randint(low, high), []
        while sum(len(w) + 1 for w in words) < target:
            words.append(rng.choice(_WORDS))
        out.append(" ".join(words).capitalize() + ".")
    return out


def hashes(column: str, *seeds: int) -> str:
    """Non-negative pseudo-random bigints h<seed> of `column`, for a LATERAL subquery."""
    return ", ".join(
        f"hashint8extended({column}, {s}) & 9223372036854775807 AS h{s}" for s in seeds
    )


COMPLETIONS_SQL = """
INSERT INTO chat_completions (seq, id, owner, model, created_at, expires_at, request, response,
    metadata, prompt_tokens, completion_tokens, key_id, request_id)
SELECT g, cid, ($3::text[])[u], model, created, created + {retention},
    jsonb_build_object('model', model, 'messages',
        jsonb_build_array(jsonb_build_object('role', 'user', 'content', prompt))),
    jsonb_build_object('id', cid, 'object', 'chat.completion', 'created', created,
        'model', model, 'system_fingerprint', 'fp_bench', 'choices', jsonb_build_array(
            jsonb_build_object('index', 0, 'finish_reason', 'stop', 'logprobs', NULL,
                'message', jsonb_build_object('role', 'assistant', 'content', answer,
                    'refusal', NULL))),
        'usage', jsonb_build_object('prompt_tokens', pt, 'completion_tokens', ct,
            'total_tokens', pt + ct)),
    jsonb_build_object('feature', (ARRAY{features})[1 + h4 % 6],
        'user_id', 'user-' || lpad((h5 % 10000)::text, 5, '0')),
    pt, ct, CASE WHEN u = 1 AND h2 % 10 >= 8 THEN $5 ELSE ($4::text[])[u] END,
    'req_' || md5('q' || g)
FROM generate_series($1::bigint, $2::bigint) AS g
CROSS JOIN LATERAL (SELECT {hashes}) AS h
CROSS JOIN LATERAL (SELECT
    'chatcmpl-' || md5('c' || g) AS cid,
    CASE WHEN h1 % 1000 < 500 THEN 1 ELSE 2 + (h1 % 19)::int END AS u,
    CASE WHEN h3 % 10 < 6 THEN '{m0}' WHEN h3 % 10 < 9 THEN '{m1}' ELSE '{m2}' END AS model,
    {start} + (g - 1) * {span} / {rows} + h6 % 60 AS created,
    ($6::text[])[1 + (h7 % 4096)::int] AS prompt,
    ($7::text[])[1 + (h8 % 4096)::int] AS answer) AS r
CROSS JOIN LATERAL (SELECT 8 + length(prompt) / 4 AS pt, 1 + length(answer) / 4 AS ct) AS t
"""

METADATA_SQL = """
INSERT INTO chat_completion_metadata (completion_seq, key, value, owner)
SELECT seq, pair.key, pair.value, owner
FROM chat_completions, jsonb_each_text(metadata) AS pair WHERE seq BETWEEN $1 AND $2
"""

USAGE_SQL = """
INSERT INTO usage_records (record_id, created_at, day, request_id, owner, key_id, route,
    background, model_requested, model_served, provider, input_tokens, output_tokens,
    cached_tokens, cost_usd, latency_ms, ttft_ms, status_code, error_code, upstream_attempts,
    metadata)
SELECT md5('u' || request_id), created_at + (h1 % 1000) / 1000.0,
    to_char(to_timestamp(created_at) AT TIME ZONE 'UTC', 'YYYY-MM-DD'), request_id, owner,
    key_id, route, background, model, model,
    CASE WHEN model LIKE 'smollm%' THEN 'local' ELSE 'openai' END, tokens_in,
    CASE WHEN code = 200 THEN tokens_out ELSE 0 END, 0,
    CASE WHEN code <> 200 OR model LIKE 'smollm%' THEN 0
         WHEN model = 'gpt-4o' THEN tokens_in * 2.5e-6 + tokens_out * 1e-5
         ELSE tokens_in * 1.5e-7 + tokens_out * 6e-7 END,
    300 + h2 % 4000 + (h1 % 1000) / 1000.0, 80 + h2 % 400,
    code, CASE code WHEN 429 THEN 'rate_limit_exceeded' WHEN 500 THEN 'server_error' END, 1,
    metadata
FROM ({source}) AS s
CROSS JOIN LATERAL (SELECT {hashes}) AS h
CROSS JOIN LATERAL (SELECT CASE WHEN h3 % 100 < {fail_2} THEN 429
    WHEN h3 % 100 < {fail_3} THEN 500 ELSE 200 END AS code) AS c
"""
USAGE_OF_COMPLETIONS = """SELECT seq AS n, created_at, request_id, owner, key_id, model,
    metadata, prompt_tokens AS tokens_in, completion_tokens AS tokens_out,
    '/v1/chat/completions' AS route, false AS background
    FROM chat_completions WHERE seq BETWEEN $1 AND $2"""
USAGE_OF_RESPONSES = """SELECT seq AS n, created_at, request_id, owner, key_id, model,
    request->'metadata' AS metadata, input_tokens AS tokens_in, output_tokens AS tokens_out,
    '/v1/responses' AS route, background FROM responses
    WHERE status IN ('completed', 'failed') AND seq BETWEEN $1 AND $2"""

RESPONSES_SQL = """
INSERT INTO responses (seq, id, owner, model, status, background, created_at, expires_at,
    request, input_items, response, input_tokens, output_tokens, queued_at, attempts,
    worker_id, lease_expires_at, key_id, request_id)
SELECT g, rid, ($3::text[])[u], model, status, background, created, created + {retention},
    jsonb_build_object('model', model, 'input', prompt, 'background', background,
        'metadata', meta),
    jsonb_build_array(jsonb_build_object('type', 'message', 'id', 'msg_in' || md5('i' || g),
        'role', 'user', 'content', jsonb_build_array(
            jsonb_build_object('type', 'input_text', 'text', prompt)))),
    jsonb_build_object('id', rid, 'object', 'response', 'created_at', created,
        'status', status, 'background', background, 'model', model, 'metadata', meta,
        'error', CASE WHEN status = 'failed' THEN jsonb_build_object('code', 'server_error',
            'message', 'The model failed.') END,
        'output', CASE WHEN status = 'completed' THEN jsonb_build_array(jsonb_build_object(
            'type', 'message', 'id', 'msg_' || md5('o' || g), 'status', 'completed',
            'role', 'assistant', 'content', jsonb_build_array(jsonb_build_object(
                'type', 'output_text', 'text', answer, 'annotations', '[]'::jsonb))))
            ELSE '[]'::jsonb END,
        'usage', jsonb_build_object('input_tokens', pt, 'output_tokens', ct,
            'total_tokens', pt + ct)),
    pt, ct, CASE WHEN background THEN created END, CASE WHEN status = 'queued' THEN 0 ELSE 1 END,
    CASE WHEN status = 'in_progress' THEN 'worker-bench' END,
    CASE WHEN status = 'in_progress' THEN extract(epoch FROM now()) + 86400 END,
    CASE WHEN u = 1 AND h2 % 10 >= 8 THEN $5 ELSE ($4::text[])[u] END, 'req_' || md5('s' || g)
FROM generate_series($1::bigint, $2::bigint) AS g
CROSS JOIN LATERAL (SELECT {hashes}) AS h
CROSS JOIN LATERAL (SELECT 'resp_' || md5('r' || g) AS rid,
    CASE WHEN h1 % 1000 < 500 THEN 1 ELSE 2 + (h1 % 19)::int END AS u,
    CASE WHEN h3 % 10 < 6 THEN '{m0}' WHEN h3 % 10 < 9 THEN '{m1}' ELSE '{m2}' END AS model,
    h4 % 5 = 0 AS background, {start} + (g - 1) * {span} / {rows} + h6 % 60 AS created,
    jsonb_build_object('feature', (ARRAY{features})[1 + h5 % 6]) AS meta,
    ($6::text[])[1 + (h7 % 4096)::int] AS prompt,
    ($7::text[])[1 + (h8 % 4096)::int] AS answer) AS r
CROSS JOIN LATERAL (SELECT CASE
    WHEN background AND g > {rows} - 200 THEN (CASE WHEN h2 % 2 = 0 THEN 'queued'
        ELSE 'in_progress' END)
    WHEN h5 % 100 < (CASE WHEN background THEN 5 ELSE 2 END) THEN 'failed'
    ELSE 'completed' END AS status) AS st
CROSS JOIN LATERAL (SELECT 8 + length(prompt) / 4 AS pt,
    CASE WHEN st.status = 'completed' THEN 1 + length(answer) / 4 ELSE 0 END AS ct) AS t
"""


@dataclass
class People:
    """The seeded accounts: [0] is the heavy user; `keys` parallel to `users` ("prod")."""

    users: list[str]
    emails: list[str]
    keys: list[str]
    dev_key: str  # the heavy user's second key
    heavy_secret: str
    seeded_at: int = 0


async def create_people(url: str) -> People:
    database = Database(url)
    try:
        accounts = Accounts(AccountStore(database), AuditLog(AuditStore(database)))
        users, emails, keys, secret = [], [], [], ""
        with acting_as(cli_actor()):
            for index in range(USERS):
                email = "heavy@bench.test" if index == 0 else f"user{index:02d}@bench.test"
                user = await accounts.add_user(email, f"bench-password-{index:02d}")
                new = await accounts.create_key(email, "prod")
                users.append(user.id)
                emails.append(email)
                keys.append(new.key.id)
                secret = secret or new.secret
            dev = await accounts.create_key(emails[0], "dev")
        return People(users, emails, keys, dev.key.id, secret, int(time.time()))
    finally:
        await database.close()


def sql(template: str, rows: int, start: int) -> str:
    return template.format(
        retention=RETENTION_DAYS * DAY, features="['" + "','".join(FEATURES) + "']",
        m0=MODELS[0], m1=MODELS[1], m2=MODELS[2], start=start, span=SPAN, rows=rows,
        hashes=hashes("g", *range(1, 9)),
    )  # fmt: skip


def usage_sql(source: str, failures: bool) -> str:
    return USAGE_SQL.format(source=source, hashes=hashes("n", 1, 2, 3),
                            fail_2=2 if failures else 0, fail_3=3 if failures else 0)  # fmt: skip


async def bulk(connection: asyncpg.Connection, label: str, statement: str, total: int,
               *args: Any) -> None:  # fmt: skip
    """Run `statement` over 1..total in chunks: $1, $2 are a chunk's bounds, then `args`."""
    started = time.perf_counter()
    for first in range(1, total + 1, CHUNK):
        await connection.execute(statement, first, min(first + CHUNK - 1, total), *args)
    elapsed = time.perf_counter() - started
    console.print(f"  {label:<28} {total:>9,} rows in {elapsed:6.1f} s", highlight=False)


async def seed_rows(connection: asyncpg.Connection, people: People, rows: int) -> None:
    rng = random.Random(7)
    prompts, answers = texts(rng, 4096, 170, 230), texts(rng, 4096, 270, 330)
    start, responses = people.seeded_at - SPAN, rows // 20
    args = (people.users, people.keys, people.dev_key, prompts, answers)
    await bulk(connection, "chat_completions", sql(COMPLETIONS_SQL, rows, start), rows, *args)
    await bulk(connection, "chat_completion_metadata", METADATA_SQL, rows)
    await bulk(connection, "usage_records (completions)", usage_sql(USAGE_OF_COMPLETIONS, True),
               rows)  # fmt: skip
    await bulk(connection, "responses", sql(RESPONSES_SQL, responses, start), responses, *args)
    await bulk(connection, "usage_records (responses)", usage_sql(USAGE_OF_RESPONSES, False),
               responses)  # fmt: skip
    for table, count in (("chat_completions", rows), ("responses", responses)):
        await connection.execute(
            f"SELECT setval(pg_get_serial_sequence('{table}', 'seq'), {count})"
        )


async def seed_jobs_and_budgets(connection: asyncpg.Connection, people: People) -> None:
    """A few batches and document analyses of the heavy user, and three budgets."""
    now, heavy, key = people.seeded_at, people.users[0], people.keys[0]
    principal = json.dumps(asdict(Principal(heavy, False, people.emails[0], key)))
    for i, status in enumerate(("completed", "in_progress", "failed", "completed", "validating")):
        times = {"created_at": now - (5 - i) * DAY, "expires_at": now + DAY}
        counts = {"total": 100, "completed": 100 if status == "completed" else 40, "failed": 0}
        await connection.execute(
            "INSERT INTO batches (id, owner, key_id, principal, endpoint, model, input_file_id,"
            " completion_window, status, times, expires_at, metadata, request_counts, attempts,"
            " request_id) VALUES ($1, $2, $3, $4::jsonb, '/v1/chat/completions', 'gpt-4o-mini',"
            " $5, '24h', $6, $7::jsonb, $8, '{}'::jsonb, $9::jsonb, 1, $10)",
            f"batch_bench{i}", heavy, key, principal, f"file-bench{i}", status,
            json.dumps(times), now + DAY, json.dumps(counts), f"req_batch{i}",
        )  # fmt: skip
    for i, status in enumerate(("completed", "failed", "in_progress")):
        await connection.execute(
            "INSERT INTO document_analyses (id, owner, principal, model, name, status, created_at,"
            " finished_at, chunks, jobs, stage, metadata, attempts) VALUES ($1, $2, $3::jsonb,"
            " 'gpt-4o-mini', $4, $5, $6, $7, '[\"part one\", \"part two\"]'::jsonb, '[]'::jsonb,"
            " $8, '{}'::jsonb, 1)",
            f"analysis_bench{i}", heavy, principal, f"report-{i}.pdf", status,
            now - (3 - i) * DAY, None if status == "in_progress" else now - (3 - i) * DAY + 60,
            "map" if status == "in_progress" else None,
        )  # fmt: skip
    budgets = [("user", heavy, 5000.0, "month", False), ("key", key, 50.0, "day", True),
               ("user", people.users[1], 100.0, "total", False)]  # fmt: skip
    for i, (scope, subject, amount, period, soft) in enumerate(budgets):
        await connection.execute(
            "INSERT INTO budgets (id, scope, subject_id, amount_usd, period, soft, created_at)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7)",
            f"budget_bench{i}", scope, subject, amount, period, soft, now,
        )  # fmt: skip


async def rebuild_rollup(url: str) -> None:
    """The usage records were written around the store: their daily rollup, from them."""
    started = time.perf_counter()
    database = Database(url)
    try:
        tuples = await UsageStore(database).rebuild_daily()
    finally:
        await database.close()
    elapsed = time.perf_counter() - started
    console.print(f"  {'usage_daily (rebuilt)':<28} {tuples:>9,} rows in {elapsed:6.1f} s",
                  highlight=False)  # fmt: skip


async def seed(dsn: str, url: str, rows: int) -> People:
    started = time.perf_counter()
    people = await create_people(url)
    connection = await asyncpg.connect(dsn)
    try:
        indexes = await connection.fetch(
            "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' AND"
            " tablename = ANY($1::text[]) AND indexname NOT IN (SELECT conname FROM pg_constraint)",
            list(SEEDED_TABLES),
        )
        for index in indexes:
            await connection.execute(f'DROP INDEX "{index["indexname"]}"')
        await seed_rows(connection, people, rows)
        await seed_jobs_and_budgets(connection, people)
        await rebuild_rollup(url)
        began = time.perf_counter()
        await connection.execute("SET maintenance_work_mem = '1GB'")
        for index in indexes:
            await connection.execute(index["indexdef"])
        console.print(f"  {len(indexes)} indexes rebuilt in {time.perf_counter() - began:.1f} s")
        began = time.perf_counter()
        await connection.execute("VACUUM ANALYZE")
        console.print(f"  VACUUM ANALYZE in {time.perf_counter() - began:.1f} s")
        await connection.execute("CREATE TABLE bench_dashboard (name text PRIMARY KEY, value text)")
        await connection.execute(
            "INSERT INTO bench_dashboard VALUES ('people', $1)", json.dumps(asdict(people))
        )
    finally:
        await connection.close()
    console.print(f"seeded in {time.perf_counter() - started:.1f} s", highlight=False)
    return people


async def load_people(dsn: str) -> People | None:
    try:
        connection = await asyncpg.connect(dsn)
    except asyncpg.InvalidCatalogNameError:
        return None
    try:
        value = await connection.fetchval("SELECT value FROM bench_dashboard WHERE name = 'people'")
    except asyncpg.UndefinedTableError:
        return None
    finally:
        await connection.close()
    return People(**json.loads(value)) if value else None


async def prepare(args: argparse.Namespace) -> tuple[str, str, People]:
    """The database, seeded (or, with --reuse, as seeded before), at the newest schema."""
    dsn = f"{args.server.rstrip('/')}/{args.database}"
    url = dsn.replace("postgresql://", "postgresql+asyncpg://", 1)
    people = await load_people(dsn) if args.reuse else None
    if people is None:
        admin = await asyncpg.connect(f"{args.server.rstrip('/')}/postgres")
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{args.database}" WITH (FORCE)')
            await admin.execute(f'CREATE DATABASE "{args.database}"')
        finally:
            await admin.close()
        await asyncio.to_thread(upgrade_database, url)
        console.print(f"seeding {args.database}: {args.rows:,} stored completions ...")
        people = await seed(dsn, url, args.rows)
    else:
        await asyncio.to_thread(upgrade_database, url)
        console.print(f"reusing {args.database}, seeded {fmt_time(people.seeded_at)}")
    return dsn, url, people


async def sample_ids(dsn: str, people: People) -> tuple[list[str], list[str]]:
    """Ids of 50 random completions and 20 random responses of the heavy user."""
    connection = await asyncpg.connect(dsn)
    try:
        found = []
        for table, count in (("chat_completions", 50), ("responses", 20)):
            rows = await connection.fetch(
                f"SELECT id FROM {table} TABLESAMPLE SYSTEM (1) REPEATABLE (3) WHERE owner = $1"
                " LIMIT $2", people.users[0], count,
            )  # fmt: skip
            found.append([row["id"] for row in rows])
        return found[0], found[1]
    finally:
        await connection.close()


def fmt_time(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M UTC")


# --- the SQL: auto_explain's plans in the server log --------------------------------------


@dataclass
class Captured:
    """One statement as auto_explain logged it."""

    text: str
    ms: float
    rows: int  # returned to the server
    counted: int  # rows under a count() over COUNTED_TABLES (0: no such count)
    relations: set[str]
    grouped: bool  # GROUP BY or an aggregate on top: its rows are totals, not stored rows
    params: str = ""


_ENTRY = re.compile(
    r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)? \S+ \[(\d+)\] (?:(\S*)@(\S*) )?([A-Z]+):  ",
    re.M,
)
_PLAN = re.compile(r"duration: ([\d.]+) ms  plan:\s*(\{.*)", re.S)
_EXECUTE = re.compile(r"duration: [\d.]+ ms  execute [^:]*: (.*)", re.S)


def walk(node: dict[str, Any]):
    yield node
    for child in node.get("Plans", []):
        yield from walk(child)


def captured(text: str, ms: float, plan: dict[str, Any]) -> Captured:
    relations = {n["Relation Name"] for n in walk(plan) if "Relation Name" in n}
    counted = 0
    if re.search(r"\bcount\s*\(", text, re.I):
        for node in walk(plan):
            if (
                node["Node Type"] == "Aggregate"
                and {n.get("Relation Name") for n in walk(node)} & COUNTED_TABLES
            ):
                seen = sum(c["Actual Rows"] * c["Actual Loops"] for c in node.get("Plans", []))
                counted = max(counted, int(seen))
    rows = int(plan["Actual Rows"] * plan["Actual Loops"])
    grouped = "Aggregate" in plan["Node Type"] or bool(re.search(r"\bGROUP BY\b", text, re.I))
    return Captured(text, ms, rows, counted, relations, grouped)


def parse_log(chunk: str, database: str) -> list[Captured]:
    marks = list(_ENTRY.finditer(chunk))
    statements, params, executing = [], {}, {}
    for index, mark in enumerate(marks):
        if mark.group(3) != database:
            continue
        end = marks[index + 1].start() if index + 1 < len(marks) else len(chunk)
        body = chunk[mark.end() : end].replace("\n\t", "\n").strip()
        pid, level = mark.group(1), mark.group(4)
        if level == "LOG" and (plan := _PLAN.match(body)):
            document = json.loads(plan.group(2))
            statements.append(captured(document["Query Text"], float(plan.group(1)),
                                       document["Plan"]))  # fmt: skip
        elif level == "LOG" and (execute := _EXECUTE.match(body)):
            executing[pid] = execute.group(1).strip()
        elif level == "DETAIL" and body.startswith("parameters:") and pid in executing:
            params[executing.pop(pid)] = body.removeprefix("parameters:").strip()
    for statement in statements:
        statement.params = params.get(statement.text.strip(), "")
    return statements


async def set_capture(dsn: str, database: str, on: bool) -> None:
    connection = await asyncpg.connect(dsn)
    try:
        if not on:
            await connection.execute(f'ALTER DATABASE "{database}" RESET ALL')
        for name, value in CAPTURE_SETTINGS.items() if on else ():
            await connection.execute(f"ALTER DATABASE \"{database}\" SET {name} = '{value}'")
    finally:
        await connection.close()


def with_params(text: str, params: str) -> str:
    values = dict(re.findall(r"\$(\d+) = ('(?:[^']|'')*'|NULL)", params))
    return re.sub(r"\$(\d+)\b", lambda m: values.get(m.group(1), m.group(0)), text)
