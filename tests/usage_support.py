"""Test support for the usage ledger: accounts with keys, the usage API, the table's rows."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

from aiservice.store.database import Database
from aiservice.store.usage import UsageQuery, UsageStore
from support import MASTER_KEY, RunningServer, bearer, new_email, run_in_thread, wait_until

USAGE_FIELDS = {"requests", "input_tokens", "output_tokens", "total_tokens", "cost_usd", "errors"}


@dataclass(frozen=True)
class Account:
    """A user made for one test, with one API key."""

    user_id: str
    email: str
    key_id: str
    key: str


def new_account(server: RunningServer, label: str = "usage") -> Account:
    email = new_email(label)
    with httpx.Client(base_url=server.base_url, headers=bearer(MASTER_KEY), timeout=30) as admin:
        user = admin.post("/v1/admin/users", json={"email": email, "password": "password-1234"})
        assert user.status_code == 201, user.text
        key = admin.post("/v1/admin/keys", json={"email": email})
        assert key.status_code == 201, key.text
    return Account(user.json()["id"], email, key.json()["id"], key.json()["key"])


def get_usage(server: RunningServer, key: str, **params: Any) -> httpx.Response:
    """GET /v1/usage as the holder of `key`; it flushes the server's ledger first."""
    return httpx.get(f"{server.base_url}/v1/usage", params=params, headers=bearer(key), timeout=30)


def usage_data(server: RunningServer, key: str, **params: Any) -> list[dict[str, Any]]:
    """The `data` of a 200 usage answer, each row checked for the totals' fields and types."""
    response = get_usage(server, key, **params)
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"object", "data"} and body["object"] == "list", body
    for row in body["data"]:
        assert set(row) >= USAGE_FIELDS, row
        for name in USAGE_FIELDS - {"cost_usd"}:
            assert isinstance(row[name], int) and row[name] >= 0, row
        assert isinstance(row["cost_usd"], int | float) and row["cost_usd"] >= 0, row
        assert row["total_tokens"] == row["input_tokens"] + row["output_tokens"], row
        assert row["errors"] <= row["requests"], row
    return body["data"]


def database_url_of(server: RunningServer) -> str:
    return server.database_url or f"sqlite+aiosqlite:///{server.home / 'aiservice.db'}"


def table_rows(server: RunningServer) -> list[dict[str, Any]]:
    """Every usage record in the server's database, as column name → value, oldest first."""
    return read_table(database_url_of(server))


def read_table(url: str) -> list[dict[str, Any]]:
    """Every usage record in the database at `url`, as column name → value, oldest first."""

    async def read() -> list[dict[str, Any]]:
        database = Database(url)
        try:
            records = await UsageStore(database).records(UsageQuery(), limit=100_000)
        finally:
            await database.close()
        return [
            {
                prop.columns[0].name: getattr(record, prop.key)
                for prop in record.__mapper__.column_attrs
            }
            for record in records
        ]

    return run_in_thread(read)


def records_of(server: RunningServer, request_id: str) -> list[dict[str, Any]]:
    return [row for row in table_rows(server) if row["request_id"] == request_id]


def flushed_records_of(
    server: RunningServer, request_id: str, count: int = 1, timeout: float = 30.0
) -> list[dict[str, Any]]:
    """The records of one request once `count` are in the table, flushing through the usage
    API (a stream's record is taken a moment after its last byte, so this polls)."""

    def found() -> list[dict[str, Any]] | None:
        assert get_usage(server, MASTER_KEY).status_code == 200
        rows = records_of(server, request_id)
        assert len(rows) <= count, rows
        return rows if len(rows) == count else None

    return wait_until(found, timeout=timeout, what=f"{count} usage record(s) of {request_id}")
