"""Queries on users and API keys."""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, or_, select, update
from sqlalchemy.exc import IntegrityError

from aiservice.store.database import Database
from aiservice.store.key_lookup import ActiveKey
from aiservice.store.tables import ApiKey, User


class DuplicateEmail(ValueError):
    """A user with this e-mail already exists."""


class AccountStore:
    def __init__(self, database: Database):
        self._sessions = database.sessions
        self._key_lookup = database.key_lookup

    async def add_user(self, user: User) -> None:
        try:
            async with self._sessions.begin() as session:
                session.add(user)
        except IntegrityError:
            raise DuplicateEmail(user.email) from None

    async def user_by_email(self, email: str) -> User | None:
        async with self._sessions() as session:
            return await session.scalar(select(User).where(User.email == email))

    async def user_by_id(self, user_id: str) -> User | None:
        async with self._sessions() as session:
            return await session.get(User, user_id)

    async def users(self) -> list[User]:
        async with self._sessions() as session:
            return list(await session.scalars(select(User).order_by(User.created_at, User.email)))

    async def set_disabled(self, email: str, disabled: bool) -> bool:
        async with self._sessions.begin() as session:
            result = await session.execute(
                update(User).where(User.email == email).values(disabled=disabled)
            )
            return result.rowcount > 0

    async def add_key(self, key: ApiKey) -> None:
        async with self._sessions.begin() as session:
            session.add(key)

    async def keys(self, user_id: str | None = None) -> list[tuple[ApiKey, User]]:
        query = select(ApiKey, User).join(User, User.id == ApiKey.user_id)
        if user_id is not None:
            query = query.where(ApiKey.user_id == user_id)
        async with self._sessions() as session:
            result = await session.execute(query.order_by(ApiKey.created_at, ApiKey.id))
            return [(key, user) for key, user in result.all()]

    async def key_by_id(self, key_id: str) -> tuple[ApiKey, User] | None:
        async with self._sessions() as session:
            row = (
                await session.execute(
                    select(ApiKey, User)
                    .join(User, User.id == ApiKey.user_id)
                    .where(ApiKey.id == key_id)
                )
            ).first()
            return (row[0], row[1]) if row else None

    async def revoke_key(self, key_id: str, now: int) -> bool:
        """Revoke now a key still working (a rotated key in its grace included)."""
        async with self._sessions.begin() as session:
            result = await session.execute(
                update(ApiKey).where(ApiKey.id == key_id, _working(now)).values(revoked_at=now)
            )
            return result.rowcount > 0

    async def rotate_key(self, key_id: str, successor: ApiKey, revoke_at: int, now: int) -> bool:
        """Add `successor` and mark the key replaced by it, revoked at `revoke_at`, in one
        transaction; False (nothing written) if the key is not working or already rotated."""
        async with self._sessions.begin() as session:
            result = await session.execute(
                update(ApiKey)
                .where(ApiKey.id == key_id, ApiKey.successor_id.is_(None), _working(now))
                .values(successor_id=successor.id, revoked_at=revoke_at)
            )
            if result.rowcount == 0:
                return False
            session.add(successor)
            return True

    async def set_key_zero_retention(self, key_id: str, enabled: bool) -> bool:
        async with self._sessions.begin() as session:
            result = await session.execute(
                update(ApiKey).where(ApiKey.id == key_id).values(zero_retention=enabled)
            )
            return result.rowcount > 0

    async def set_user_zero_retention(self, email: str, enabled: bool) -> bool:
        async with self._sessions.begin() as session:
            result = await session.execute(
                update(User).where(User.email == email).values(zero_retention=enabled)
            )
            return result.rowcount > 0

    async def set_key_limits(self, key_id: str, limits: dict[str, Any] | None) -> bool:
        async with self._sessions.begin() as session:
            result = await session.execute(
                update(ApiKey).where(ApiKey.id == key_id).values(rate_limits=limits)
            )
            return result.rowcount > 0

    async def set_user_limits(self, email: str, limits: dict[str, Any] | None) -> bool:
        async with self._sessions.begin() as session:
            result = await session.execute(
                update(User).where(User.email == email).values(rate_limits=limits)
            )
            return result.rowcount > 0

    async def set_key_safety(self, key_id: str, safety: dict[str, Any] | None) -> bool:
        async with self._sessions.begin() as session:
            result = await session.execute(
                update(ApiKey).where(ApiKey.id == key_id).values(safety=safety)
            )
            return result.rowcount > 0

    async def set_user_safety(self, email: str, safety: dict[str, Any] | None) -> bool:
        async with self._sessions.begin() as session:
            result = await session.execute(
                update(User).where(User.email == email).values(safety=safety)
            )
            return result.rowcount > 0

    async def active_key(self, key_hash: str, now: int | None = None) -> ActiveKey | None:
        """The unrevoked key with this hash and its enabled owner: only the columns a request
        needs, as plain values (store/key_lookup.py: every request with a key asks)."""
        return await self._key_lookup.find(key_hash, now)


def _working(now: int) -> ColumnElement[bool]:
    """Not revoked, or revoked only at a time still to come (a rotated key in its grace)."""
    return or_(ApiKey.revoked_at.is_(None), ApiKey.revoked_at > now)
