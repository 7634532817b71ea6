"""The API-key lookup every keyed request makes (store/key_lookup.py), on SQLite and
PostgreSQL: what it returns, and that a change written by another process's connection (the
CLI, another server) counts on the very next lookup.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from aiservice.governance.accounts import Accounts, key_digest
from aiservice.settings import LimitValues
from aiservice.store.accounts import AccountStore
from aiservice.store.database import Database

PASSWORD = "a-long-enough-password"


@asynccontextmanager
async def accounts_on(url: str) -> AsyncIterator[tuple[Accounts, Database]]:
    database = Database(url)
    try:
        yield Accounts(AccountStore(database)), database
    finally:
        await database.close()


async def test_an_active_key_is_found_with_its_owner_and_limits(store_url: str) -> None:
    async with accounts_on(store_url) as (accounts, database):
        user = await accounts.add_user("ann@example.com", PASSWORD, is_admin=True)
        new = await accounts.create_key("ann@example.com", rate_limits=LimitValues(rpm=7))
        await accounts.set_user_limits("ann@example.com", LimitValues(tpd=1000))
        found = await database.key_lookup.find(key_digest(new.secret))
        assert found is not None
        assert found.key_id == new.key.id and found.user_id == user.id
        assert found.is_admin is True and found.email == "ann@example.com"
        assert found.key_limits == {"rpm": 7}
        assert found.user_limits == {"tpd": 1000}
        assert await database.key_lookup.find(key_digest("sk-not-a-key")) is None


async def test_a_key_without_limits_has_none(store_url: str) -> None:
    async with accounts_on(store_url) as (accounts, database):
        await accounts.add_user("bob@example.com", PASSWORD)
        new = await accounts.create_key("bob@example.com")
        found = await database.key_lookup.find(key_digest(new.secret))
        assert found is not None
        assert found.is_admin is False
        assert found.key_limits is None and found.user_limits is None


async def test_a_change_through_another_connection_counts_on_the_next_lookup(
    store_url: str,
) -> None:
    async with accounts_on(store_url) as (_, database), accounts_on(store_url) as (cli, _):
        await cli.add_user("cat@example.com", PASSWORD)
        first = await cli.create_key("cat@example.com")
        second = await cli.create_key("cat@example.com")
        lookup = database.key_lookup
        assert await lookup.find(key_digest(first.secret)) is not None  # connected, warm
        await cli.set_key_limits(first.key.id, LimitValues(rpm=3))
        found = await lookup.find(key_digest(first.secret))
        assert found is not None and found.key_limits == {"rpm": 3}
        await cli.revoke_key(first.key.id)
        assert await lookup.find(key_digest(first.secret)) is None
        assert await lookup.find(key_digest(second.secret)) is not None
        await cli.disable_user("cat@example.com")
        assert await lookup.find(key_digest(second.secret)) is None
