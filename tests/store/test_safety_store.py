"""A key's and a user's own content policy (the `safety` columns, migration 0009), on SQLite
and PostgreSQL: stored and cleared through Accounts, read by the per-request key lookup, carried
by the Principal of key and password logins, and a migration that goes down and up again
without losing an account."""

from __future__ import annotations

from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager

import pytest
from alembic import command
from sqlalchemy import inspect
from sqlalchemy.engine import Connection

from aiservice.errors import NotFound
from aiservice.governance.accounts import Accounts, key_digest, key_view, user_view
from aiservice.settings import LimitValues, SafetyValues
from aiservice.store.accounts import AccountStore
from aiservice.store.database import Database
from aiservice.store.migrate import alembic_config

PASSWORD = "a-long-enough-password"


@asynccontextmanager
async def accounts_on(url: str) -> AsyncIterator[tuple[Accounts, Database]]:
    database = Database(url)
    try:
        yield Accounts(AccountStore(database)), database
    finally:
        await database.close()


async def test_a_keys_and_its_users_policy_are_stored_and_read_with_the_key(
    store_url: str,
) -> None:
    async with accounts_on(store_url) as (accounts, database):
        await accounts.add_user("ann@example.com", PASSWORD)
        new = await accounts.create_key(
            "ann@example.com", safety=SafetyValues(moderation="block", pii="redact")
        )
        assert new.key.safety == {"moderation": "block", "pii": "redact"}
        user = await accounts.set_user_safety("ANN@example.com", SafetyValues(pii="flag"))
        assert user.safety == {"pii": "flag"}  # unset fields are not stored

        found = await database.key_lookup.find(key_digest(new.secret))
        assert found is not None
        assert found.key_safety == {"moderation": "block", "pii": "redact"}
        assert found.user_safety == {"pii": "flag"}
        key, owner = await accounts.key(new.key.id)
        assert key_view(key, owner)["safety"] == {"moderation": "block", "pii": "redact"}
        assert user_view(owner)["safety"] == {"pii": "flag"}


async def test_the_policy_and_the_rate_limits_are_independent(store_url: str) -> None:
    async with accounts_on(store_url) as (accounts, database):
        await accounts.add_user("bob@example.com", PASSWORD)
        new = await accounts.create_key(
            "bob@example.com", rate_limits=LimitValues(rpm=5), safety=SafetyValues(pii="redact")
        )
        await accounts.set_key_limits(new.key.id, LimitValues(tpm=100))
        await accounts.set_key_safety(new.key.id, SafetyValues(moderation="score"))
        found = await database.key_lookup.find(key_digest(new.secret))
        assert found is not None
        assert found.key_limits == {"tpm": 100}
        assert found.key_safety == {"moderation": "score"}  # replaced, not merged


@pytest.mark.parametrize("cleared", [SafetyValues(), None], ids=["empty", "none"])
async def test_a_cleared_policy_is_stored_as_null(
    store_url: str, cleared: SafetyValues | None
) -> None:
    async with accounts_on(store_url) as (accounts, database):
        await accounts.add_user("cat@example.com", PASSWORD)
        new = await accounts.create_key("cat@example.com", safety=SafetyValues(pii="flag"))
        await accounts.set_user_safety("cat@example.com", SafetyValues(moderation="block"))
        key, _ = await accounts.set_key_safety(new.key.id, cleared)
        user = await accounts.set_user_safety("cat@example.com", cleared)
        assert key.safety is None and user.safety is None
        assert key_view(key, user)["safety"] == {} and user_view(user)["safety"] == {}
        found = await database.key_lookup.find(key_digest(new.secret))
        assert found is not None
        assert found.key_safety is None and found.user_safety is None


async def test_a_new_account_has_no_policy_of_its_own(store_url: str) -> None:
    async with accounts_on(store_url) as (accounts, database):
        user = await accounts.add_user("dan@example.com", PASSWORD)
        new = await accounts.create_key("dan@example.com")
        assert user.safety is None and new.key.safety is None
        found = await database.key_lookup.find(key_digest(new.secret))
        assert found is not None
        assert found.key_safety is None and found.user_safety is None


async def test_an_unknown_key_or_user_is_not_found(store_url: str) -> None:
    async with accounts_on(store_url) as (accounts, _):
        with pytest.raises(NotFound, match="No key key_nope"):
            await accounts.set_key_safety("key_nope", SafetyValues(pii="flag"))
        with pytest.raises(NotFound, match=r"No user ghost@example\.com"):
            await accounts.set_user_safety("ghost@example.com", SafetyValues(pii="flag"))


async def test_the_principal_of_a_key_carries_both_policies(store_url: str) -> None:
    async with accounts_on(store_url) as (accounts, _):
        await accounts.add_user("eve@example.com", PASSWORD)
        new = await accounts.create_key("eve@example.com", safety=SafetyValues(moderation="block"))
        await accounts.set_user_safety("eve@example.com", SafetyValues(pii="redact"))
        principal = await accounts.principal_for_key(new.secret)
        assert principal is not None and principal.key_id == new.key.id
        assert principal.key_safety == {"moderation": "block"}
        assert principal.user_safety == {"pii": "redact"}


async def test_the_principal_of_a_password_login_carries_the_users_policy(
    store_url: str,
) -> None:
    async with accounts_on(store_url) as (accounts, _):
        await accounts.add_user("fay@example.com", PASSWORD)
        await accounts.create_key("fay@example.com", safety=SafetyValues(moderation="block"))
        await accounts.set_user_safety("fay@example.com", SafetyValues(moderation="score"))
        principal = await accounts.principal_for_password("fay@example.com", PASSWORD)
        assert principal is not None and principal.key_id is None
        assert principal.user_safety == {"moderation": "score"}
        assert principal.key_safety is None  # no key: none of a key's own
        # Read on every login, even while the password check itself is remembered.
        await accounts.set_user_safety("fay@example.com", None)
        again = await accounts.principal_for_password("fay@example.com", PASSWORD)
        assert again is not None and again.user_safety is None


async def test_a_policy_set_through_another_connection_counts_on_the_next_lookup(
    store_url: str,
) -> None:
    async with accounts_on(store_url) as (server, _), accounts_on(store_url) as (cli, _):
        await cli.add_user("gus@example.com", PASSWORD)
        new = await cli.create_key("gus@example.com")
        first = await server.principal_for_key(new.secret)  # the lookup is connected, warm
        assert first is not None and first.key_safety is None
        await cli.set_key_safety(new.key.id, SafetyValues(moderation="block"))
        await cli.set_user_safety("gus@example.com", SafetyValues(pii="redact"))
        second = await server.principal_for_key(new.secret)
        assert second is not None
        assert (second.key_safety, second.user_safety) == (
            {"moderation": "block"},
            {"pii": "redact"},
        )


# -- migration 0009 ------------------------------------------------------------------------


def _in_thread(revision: str, url: str, *, down: bool) -> None:
    """Alembic runs its own event loop: a thread of its own, as in the server's lifespan."""
    move = command.downgrade if down else command.upgrade
    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(move, alembic_config(url), revision).result()


async def _columns(database: Database, table: str) -> set[str]:
    def read(connection: Connection) -> set[str]:
        return {column["name"] for column in inspect(connection).get_columns(table)}

    async with database.engine.connect() as connection:
        return await connection.run_sync(read)


async def test_migration_0009_goes_down_and_up_keeping_every_account(store_url: str) -> None:
    async with accounts_on(store_url) as (accounts, _):
        await accounts.add_user("hal@example.com", PASSWORD)
        new = await accounts.create_key(
            "hal@example.com", rate_limits=LimitValues(rpm=9), safety=SafetyValues(pii="flag")
        )
        await accounts.set_user_safety("hal@example.com", SafetyValues(moderation="block"))

    _in_thread("0008", store_url, down=True)
    async with accounts_on(store_url) as (_, database):
        assert "safety" not in await _columns(database, "users")
        assert "safety" not in await _columns(database, "api_keys")
        assert "rate_limits" in await _columns(database, "api_keys")

    _in_thread("head", store_url, down=False)
    async with accounts_on(store_url) as (accounts, database):
        assert "safety" in await _columns(database, "users")
        assert "safety" in await _columns(database, "api_keys")
        # The key and its owner survived the round trip (SQLite rebuilds the tables going
        # down); what was dropped comes back empty: the configured policy.
        found = await database.key_lookup.find(key_digest(new.secret))
        assert found is not None and found.key_id == new.key.id
        assert found.key_limits == {"rpm": 9}
        assert found.key_safety is None and found.user_safety is None
