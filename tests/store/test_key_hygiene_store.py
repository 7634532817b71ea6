"""Key hygiene on SQLite and PostgreSQL (governance/accounts.py, store/key_lookup.py): keys
that expire, rotation with a grace during which both keys work, and the zero-retention flag
the key lookup hands every request.

Time is given to the lookup (`find(..., now=…)`) rather than waited for: the grace's end is
checked at the second it falls, both sides of it.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from sqlalchemy import update

from aiservice.errors import AuthenticationFailed, InvalidRequest, NotFound
from aiservice.governance.accounts import Accounts, key_digest
from aiservice.settings import LimitValues, SafetyValues
from aiservice.store.accounts import AccountStore
from aiservice.store.database import Database
from aiservice.store.tables import ApiKey

PASSWORD = "a-long-enough-password"
DAY = 86400


@asynccontextmanager
async def accounts_on(url: str) -> AsyncIterator[tuple[Accounts, Database]]:
    database = Database(url)
    try:
        yield Accounts(AccountStore(database)), database
    finally:
        await database.close()


async def _set_expiry(database: Database, key_id: str, expires_at: int) -> None:
    async with database.sessions.begin() as session:
        await session.execute(
            update(ApiKey).where(ApiKey.id == key_id).values(expires_at=expires_at)
        )


async def test_a_key_created_with_a_lifetime_expires_with_its_own_code(store_url: str) -> None:
    async with accounts_on(store_url) as (accounts, database):
        await accounts.add_user("ann@example.com", PASSWORD)
        new = await accounts.create_key("ann@example.com", expires_in_s=90 * DAY)
        assert new.key.expires_at == new.key.created_at + 90 * DAY
        assert await accounts.principal_for_key(new.secret) is not None

        await _set_expiry(database, new.key.id, int(time.time()) - 1)
        with pytest.raises(AuthenticationFailed) as refused:
            await accounts.principal_for_key(new.secret)
        assert refused.value.code == "api_key_expired"
        assert "expired" in refused.value.message and new.secret not in refused.value.message


async def test_a_key_without_a_lifetime_never_expires(store_url: str) -> None:
    async with accounts_on(store_url) as (accounts, database):
        await accounts.add_user("bob@example.com", PASSWORD)
        new = await accounts.create_key("bob@example.com")
        assert new.key.expires_at is None
        found = await database.key_lookup.find(key_digest(new.secret), now=2**40)
        assert found is not None and found.expires_at is None


async def test_a_revoked_expired_key_is_an_incorrect_key_not_an_expired_one(store_url: str) -> None:
    async with accounts_on(store_url) as (accounts, database):
        await accounts.add_user("cat@example.com", PASSWORD)
        new = await accounts.create_key("cat@example.com", expires_in_s=60)
        await _set_expiry(database, new.key.id, int(time.time()) - 1)
        await accounts.revoke_key(new.key.id)
        assert await accounts.principal_for_key(new.secret) is None


async def test_a_rotated_key_works_beside_its_successor_until_its_grace_ends(
    store_url: str,
) -> None:
    async with accounts_on(store_url) as (accounts, database):
        await accounts.add_user("dan@example.com", PASSWORD)
        old = await accounts.create_key(
            "dan@example.com",
            "mailer",
            LimitValues(rpm=7),
            SafetyValues(pii="redact"),
            expires_in_s=30 * DAY,
            zero_retention=True,
        )
        new, rotated = await accounts.rotate_key(old.key.id, 3600)

        assert rotated.successor_id == new.key.id
        assert rotated.revoked_at is not None
        assert rotated.revoked_at - int(time.time()) in range(3590, 3601)
        successor = new.key
        assert (successor.user_id, successor.name) == (old.key.user_id, "mailer")
        assert successor.rate_limits == {"rpm": 7} and successor.safety == {"pii": "redact"}
        assert successor.zero_retention is True
        assert successor.expires_at == successor.created_at + 30 * DAY  # the same lifetime
        assert new.secret != old.secret

        lookup = database.key_lookup
        grace_end = rotated.revoked_at
        assert await lookup.find(key_digest(old.secret), now=grace_end - 1) is not None
        assert await lookup.find(key_digest(old.secret), now=grace_end) is None
        assert await lookup.find(key_digest(new.secret), now=grace_end) is not None
        assert await accounts.principal_for_key(old.secret) is not None  # still in its grace
        principal = await accounts.principal_for_key(new.secret)
        assert principal is not None and principal.key_id == successor.id


async def test_rotating_with_no_grace_stops_the_old_key_at_once(store_url: str) -> None:
    async with accounts_on(store_url) as (accounts, _):
        await accounts.add_user("eve@example.com", PASSWORD)
        old = await accounts.create_key("eve@example.com")
        new, _ = await accounts.rotate_key(old.key.id, 0)
        assert await accounts.principal_for_key(old.secret) is None
        assert await accounts.principal_for_key(new.secret) is not None


async def test_a_key_in_its_grace_can_still_be_revoked_at_once(store_url: str) -> None:
    async with accounts_on(store_url) as (accounts, _):
        await accounts.add_user("fay@example.com", PASSWORD)
        old = await accounts.create_key("fay@example.com")
        await accounts.rotate_key(old.key.id, DAY)
        revoked, _ = await accounts.revoke_key(old.key.id)
        assert revoked.revoked_at is not None and revoked.revoked_at <= int(time.time())
        assert await accounts.principal_for_key(old.secret) is None


async def test_a_rotated_revoked_or_unknown_key_cannot_be_rotated(store_url: str) -> None:
    async with accounts_on(store_url) as (accounts, _):
        await accounts.add_user("gus@example.com", PASSWORD)
        first = await accounts.create_key("gus@example.com")
        new, _ = await accounts.rotate_key(first.key.id, DAY)
        with pytest.raises(InvalidRequest) as twice:
            await accounts.rotate_key(first.key.id, DAY)
        assert twice.value.code == "key_already_rotated" and new.key.id in twice.value.message

        second = await accounts.create_key("gus@example.com")
        await accounts.revoke_key(second.key.id)
        with pytest.raises(InvalidRequest) as revoked:
            await accounts.rotate_key(second.key.id, DAY)
        assert revoked.value.code == "key_revoked"

        with pytest.raises(NotFound):
            await accounts.rotate_key("key_unknown", DAY)
        # Nothing was issued by the refusals: the user has the two keys and one successor.
        assert len(await accounts.keys("gus@example.com")) == 3


async def test_zero_retention_of_a_key_or_its_user_reaches_the_principal(store_url: str) -> None:
    async with accounts_on(store_url) as (accounts, _):
        user = await accounts.add_user("hal@example.com", PASSWORD, zero_retention=True)
        assert user.zero_retention is True
        new = await accounts.create_key("hal@example.com")
        assert new.key.zero_retention is False
        principal = await accounts.principal_for_key(new.secret)
        assert principal is not None and principal.zero_retention is True  # the user's

        off = await accounts.set_user_zero_retention("hal@example.com", False)
        assert off.zero_retention is False
        principal = await accounts.principal_for_key(new.secret)
        assert principal is not None and principal.zero_retention is False

        key, _ = await accounts.set_key_zero_retention(new.key.id, True)
        assert key.zero_retention is True
        principal = await accounts.principal_for_key(new.secret)
        assert principal is not None and principal.zero_retention is True  # the key's

        with pytest.raises(NotFound):
            await accounts.set_key_zero_retention("key_unknown", True)
        with pytest.raises(NotFound):
            await accounts.set_user_zero_retention("nobody@example.com", True)
