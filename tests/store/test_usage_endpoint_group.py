"""`group_by=endpoint` in the store, on both backends: each route's short name is computed in
SQL (the chat routes together, each e-mail feature apart, any other route as it is), and its
names agree with the routes the API and the batch worker really meter under."""

from __future__ import annotations

import secrets

from aiservice.api.email_routes import EMAIL_PREFIX, EMAIL_ROUTES
from aiservice.services.batch_line_run import BATCH_ROUTE
from aiservice.services.usage import parse_group_by
from aiservice.store.database import Database
from aiservice.store.usage import EMAIL_ROUTE_PREFIX, ENDPOINT_NAMES, UsageQuery, UsageStore

# route → how many records of it are written.
ROUTES = {
    "/v1/chat/completions": 2,
    "/api/ai/chat/completions": 1,
    "/v1/completions": 1,
    "/v1/responses": 3,
    BATCH_ROUTE: 2,
    "/v1/moderations": 1,
    "/v1/embeddings": 1,
    "/api/ai/email/summary": 2,
    "/api/ai/email/extract-meeting": 1,
    "embedded:/v1/chat/completions": 1,  # the Python facade's: no short name, itself
    "/v1/chat/completions/extra": 1,  # an exact match only
}
EXPECTED = {
    "chat": 3,
    "completions": 1,
    "responses": 3,
    "batch": 2,
    "moderations": 1,
    "embeddings": 1,
    "email.summary": 2,
    "email.extract-meeting": 1,
    "embedded:/v1/chat/completions": 1,
    "/v1/chat/completions/extra": 1,
}


def row(route: str, day: str, tokens: int) -> dict[str, object]:
    return {
        "record_id": secrets.token_hex(16),
        "created_at": 1_780_000_000.0,
        "day": day,
        "request_id": f"req_{secrets.token_hex(8)}",
        "owner": "u1",
        "route": route,
        "background": route == "/v1/responses",
        "input_tokens": tokens,
        "output_tokens": 1,
        "cost_usd": 0.001,
        "latency_ms": 1.0,
        "status_code": 200,
        "upstream_attempts": 0,
        "metadata": {},
    }


async def test_each_route_is_grouped_under_its_endpoint_name(store_url: str) -> None:
    database = Database(store_url)
    try:
        store = UsageStore(database)
        days = ["2026-12-01", "2026-12-02"]
        rows = [
            row(route, days[n % 2], tokens=10 + n)
            for route, count in ROUTES.items()
            for n in range(count)
        ]
        await store.insert_many(rows)

        grouped = await store.totals(UsageQuery(group_by=parse_group_by(["endpoint"])))
        assert {r["endpoint"]: r["requests"] for r in grouped} == EXPECTED
        assert [r["endpoint"] for r in grouped] == sorted(EXPECTED)  # ordered by the group
        [total] = await store.totals(UsageQuery())
        for field in ("requests", "input_tokens", "output_tokens", "total_tokens", "errors"):
            assert sum(r[field] for r in grouped) == total[field], field
        chat_tokens = sum(10 + n for n in range(2)) + 10
        assert next(r for r in grouped if r["endpoint"] == "chat")["input_tokens"] == chat_tokens

        by_day = await store.totals(UsageQuery(group_by=("day", "endpoint")))
        assert [(r["day"], r["endpoint"]) for r in by_day] == sorted(
            (r["day"], r["endpoint"]) for r in by_day
        )
        assert {(r["day"], r["endpoint"]): r["requests"] for r in by_day}[
            ("2026-12-01", "responses")
        ] == 2
        assert sum(r["requests"] for r in by_day) == total["requests"]
    finally:
        await database.close()


def test_the_names_match_the_routes_really_metered() -> None:
    assert EMAIL_ROUTE_PREFIX == EMAIL_PREFIX + "/"
    assert all(path.startswith(EMAIL_ROUTE_PREFIX) for _, path in EMAIL_ROUTES)
    assert ENDPOINT_NAMES[BATCH_ROUTE] == "batch"
    assert "endpoint" in parse_group_by(["day,endpoint"])
