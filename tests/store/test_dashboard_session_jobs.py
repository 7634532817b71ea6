"""Dashboard sessions on SQLite and PostgreSQL: who a session is, looked up again on every
page; idle and maximum age; a disabled user, a revoked key, a changed master key end it."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from sqlalchemy import select, update

from aiservice.errors import AuthenticationFailed
from aiservice.governance.accounts import Accounts
from aiservice.governance.dashboard_sessions import DashboardSessions, csrf_token_of
from aiservice.governance.login_throttle import LoginThrottle
from aiservice.governance.master_key import MasterKey
from aiservice.store.accounts import AccountStore
from aiservice.store.dashboard_sessions import DashboardSessionStore
from aiservice.store.database import Database
from aiservice.store.subject_rows import delete_account
from aiservice.store.tables import DashboardSession

IDLE_S, MAX_S = 600.0, 3600.0
MASTER = "sk-master-for-sessions"


@asynccontextmanager
async def _opened(url: str) -> AsyncIterator[Database]:
    # In the test's own event loop: the pools it opens are closed in that loop.
    database = Database(url)
    try:
        yield database
    finally:
        await database.close()


def _sessions(database: Database, master: str = MASTER) -> tuple[DashboardSessions, Accounts]:
    accounts = Accounts(AccountStore(database))
    master_key = MasterKey(hashlib.sha256(master.encode()).digest())
    sessions = DashboardSessions(
        DashboardSessionStore(database),
        accounts,
        LoginThrottle(),
        lambda: master_key,
        idle_timeout_s=IDLE_S,
        max_age_s=MAX_S,
    )
    return sessions, accounts


async def _age(database: Database, **seconds: float) -> None:
    """Move every session's times back by these many seconds."""
    table = DashboardSession
    values = {name: getattr(table, name) - value for name, value in seconds.items()}
    async with database.sessions.begin() as session:
        await session.execute(update(table).values(**values))


async def _rows(database: Database) -> list[DashboardSession]:
    async with database.sessions() as session:
        return list(await session.scalars(select(DashboardSession)))


async def test_a_session_is_its_user_and_keeps_only_a_hash(store_url: str) -> None:
    async with _opened(store_url) as database:
        sessions, accounts = _sessions(database)
        user = await accounts.add_user("dana@example.com", "password-1234")
        token = await sessions.sign_in_with_password("Dana@example.com", "password-1234", "a")
        viewer = await sessions.viewer(token)
        assert viewer is not None and viewer.principal.owner == user.id
        assert viewer.csrf_token == csrf_token_of(token) != csrf_token_of(token + "x")
        [row] = await _rows(database)
        assert token not in (row.token_hash, row.key_hash, row.user_id)
        assert await sessions.viewer(token + "x") is None
        with pytest.raises(AuthenticationFailed):
            await sessions.sign_in_with_password("dana@example.com", "wrong-password", "a")


async def test_an_idle_or_too_old_session_ends_and_is_deleted(store_url: str) -> None:
    async with _opened(store_url) as database:
        sessions, accounts = _sessions(database)
        await accounts.add_user("erin@example.com", "password-1234")
        idle = await sessions.sign_in_with_password("erin@example.com", "password-1234", "a")
        await _age(database, last_seen_at=IDLE_S + 1)
        assert await sessions.viewer(idle) is None
        assert await _rows(database) == []
        old = await sessions.sign_in_with_password("erin@example.com", "password-1234", "a")
        await _age(database, created_at=MAX_S + 1)
        assert await sessions.viewer(old) is None  # though seen a moment ago


async def test_reading_a_page_keeps_a_session_alive(store_url: str) -> None:
    async with _opened(store_url) as database:
        sessions, accounts = _sessions(database)
        await accounts.add_user("fay@example.com", "password-1234")
        token = await sessions.sign_in_with_password("fay@example.com", "password-1234", "a")
        await _age(database, last_seen_at=IDLE_S - 5, created_at=IDLE_S - 5)
        assert await sessions.viewer(token) is not None  # seen now: idle time starts again
        await _age(database, last_seen_at=IDLE_S - 5)
        assert await sessions.viewer(token) is not None


async def test_a_disabled_user_a_revoked_key_and_a_new_master_key_end_sessions(
    store_url: str,
) -> None:
    async with _opened(store_url) as database:
        sessions, accounts = _sessions(database)
        await accounts.add_user("gus@example.com", "password-1234")
        created = await accounts.create_key("gus@example.com")
        by_key = await sessions.sign_in_with_key(created.secret, "a")
        by_password = await sessions.sign_in_with_password("gus@example.com", "password-1234", "a")
        as_master = await sessions.sign_in_with_key(MASTER, "a")
        master_viewer = await sessions.viewer(as_master)
        assert master_viewer is not None and master_viewer.principal.is_admin
        await accounts.revoke_key(created.key.id)
        assert await sessions.viewer(by_key) is None
        assert await sessions.viewer(by_password) is not None
        await accounts.disable_user("gus@example.com")
        assert await sessions.viewer(by_password) is None
        restarted, _ = _sessions(database, master="sk-another-master")
        assert await restarted.viewer(as_master) is None


async def test_erasing_an_account_deletes_its_signed_in_sessions(store_url: str) -> None:
    async with _opened(store_url) as database:
        sessions, accounts = _sessions(database)
        user = await accounts.add_user("hal@example.com", "password-1234")
        other = await accounts.add_user("ida@example.com", "password-1234")
        created = await accounts.create_key("hal@example.com")
        await sessions.sign_in_with_key(created.secret, "a")
        await sessions.sign_in_with_password("hal@example.com", "password-1234", "a")
        kept = await sessions.sign_in_with_password("ida@example.com", "password-1234", "a")
        async with database.sessions.begin() as session:
            counts = await delete_account(session, user.id)
        assert counts["dashboard_session"] == 2
        assert [row.user_id for row in await _rows(database)] == [other.id]
        assert await sessions.viewer(kept) is not None
