"""Users and API keys: create, list, disable, revoke, and check credentials."""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from pydantic import BaseModel

from aiservice.errors import AuthenticationFailed, InvalidRequest, NotFound
from aiservice.governance.audit import AuditLog
from aiservice.settings import LimitValues, SafetyValues
from aiservice.store.accounts import AccountStore, DuplicateEmail
from aiservice.store.tables import ApiKey, User

_hasher = PasswordHasher()
# Verifying against this when the e-mail is unknown makes both failures take the same time.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))
# Successful password checks are remembered for a short while: Argon2 costs ~50 ms of CPU by
# design, too much to pay on every Basic-auth request of a logged-in client.
_VERIFIED_TTL_S = 60.0


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the owner of what they create, and whether they may administer."""

    owner: str
    is_admin: bool
    email: str | None = None
    key_id: str | None = None
    # Their own rate limits over the configured defaults (None: the defaults).
    key_limits: dict[str, Any] | None = None
    user_limits: dict[str, Any] | None = None
    # Their own content policy, SafetyValues without its unset fields (None: none of their own).
    key_safety: dict[str, Any] | None = None
    user_safety: dict[str, Any] | None = None
    # Zero data retention (the key's or the user's): store nothing but usage counts.
    zero_retention: bool = False
    # The ids of the key's and the user's budgets, as the database has them now.
    budget_ids: tuple[str, ...] = ()


MASTER = Principal(owner="admin", is_admin=True)


@dataclass(frozen=True, slots=True)
class NewKey:
    key: ApiKey
    secret: str  # shown once, never stored
    user: User | None = None  # the key's owner


def key_digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def normalise_email(email: str) -> str:
    email = email.strip().lower()
    if "@" not in email or len(email) > 320 or any(c.isspace() for c in email):
        raise InvalidRequest(f"Not an e-mail address: {email!r}.", param="email")
    return email


class Accounts:
    """The product's view of users and keys; used by the API, the CLI and the facade.

    Every change is written to the audit log (when given one) here, so that the admin API and
    the CLI are audited alike; reads are not."""

    def __init__(self, store: AccountStore, audit: AuditLog | None = None):
        self._store = store
        self._audit = audit
        self._verified: dict[str, float] = {}

    async def _record(self, action: str, target: str, details: dict[str, Any]) -> None:
        if self._audit is not None:
            await self._audit.record(action, target, details)

    async def add_user(
        self, email: str, password: str, *, is_admin: bool = False, zero_retention: bool = False
    ) -> User:
        email = normalise_email(email)
        if len(password) < 8:
            raise InvalidRequest("Passwords need at least 8 characters.", param="password")
        user = User(
            id="user_" + secrets.token_hex(12),
            email=email,
            password_hash=await asyncio.to_thread(_hasher.hash, password),
            is_admin=is_admin,
            disabled=False,
            created_at=int(time.time()),
            zero_retention=zero_retention,
        )
        try:
            await self._store.add_user(user)
        except DuplicateEmail:
            raise InvalidRequest(f"A user {email} already exists.", param="email") from None
        # Ids only, never the e-mail: an account erased for privacy leaves no address here.
        details = {"is_admin": is_admin, "zero_retention": zero_retention}
        await self._record("user.create", user.id, details)
        return user

    async def users(self) -> list[User]:
        return await self._store.users()

    async def disable_user(self, email: str) -> User:
        """Disable the user (their password and keys stop working at once); returns them."""
        email = normalise_email(email)
        if not await self._store.set_disabled(email, True):
            raise NotFound(f"No user {email}.")
        user = await self._store.user_by_email(email)
        assert user is not None
        await self._record("user.disable", user.id, {})
        return user

    async def create_key(
        self,
        email: str,
        name: str = "default",
        rate_limits: LimitValues | None = None,
        safety: SafetyValues | None = None,
        *,
        expires_in_s: int | None = None,
        zero_retention: bool = False,
    ) -> NewKey:
        """A new key of the user; with `expires_in_s`, it stops working that long from now."""
        name = name.strip()
        if not name or len(name) > 128:
            raise InvalidRequest("A key's name needs 1 to 128 characters.", param="name")
        if expires_in_s is not None and expires_in_s <= 0:
            raise InvalidRequest("expires_in must be more than 0 seconds.", param="expires_in")
        user = await self._store.user_by_email(normalise_email(email))
        if user is None:
            raise NotFound(f"No user {email}.")
        key, secret = _new_key(
            user.id,
            name,
            expires_in_s,
            rate_limits=_own_values(rate_limits),
            safety=_own_values(safety),
            zero_retention=zero_retention,
        )
        await self._store.add_key(key)
        await self._record("key.create", key.id, _key_details(key, user))
        return NewKey(key, secret, user)

    async def keys(self, email: str | None = None) -> list[tuple[ApiKey, User]]:
        if email is None:
            return await self._store.keys()
        user = await self._store.user_by_email(normalise_email(email))
        if user is None:
            raise NotFound(f"No user {email}.")
        return await self._store.keys(user.id)

    async def key(self, key_id: str) -> tuple[ApiKey, User]:
        found = await self._store.key_by_id(key_id)
        if found is None:
            raise NotFound(f"No key {key_id}.")
        return found

    async def user(self, email: str) -> User:
        user = await self._store.user_by_email(normalise_email(email))
        if user is None:
            raise NotFound(f"No user {email}.")
        return user

    async def revoke_key(self, key_id: str) -> tuple[ApiKey, User]:
        """Revoke the key (it stops working on the next request); returns it and its owner."""
        if not await self._store.revoke_key(key_id, int(time.time())):
            raise NotFound(f"No active key {key_id}.")
        found = await self._store.key_by_id(key_id)
        assert found is not None
        await self._record("key.revoke", key_id, _key_details(*found))
        return found

    async def set_key_limits(self, key_id: str, limits: LimitValues | None) -> tuple[ApiKey, User]:
        """Give the key its own rate limits (None: back to the defaults); returns it."""
        if not await self._store.set_key_limits(key_id, _own_values(limits)):
            raise NotFound(f"No key {key_id}.")
        found = await self._store.key_by_id(key_id)
        assert found is not None
        await self._record("key.rate_limits", key_id, {"rate_limits": found[0].rate_limits or {}})
        return found

    async def set_user_limits(self, email: str, limits: LimitValues | None) -> User:
        """Give the user their own rate limits (None: back to the defaults); returns them."""
        email = normalise_email(email)
        if not await self._store.set_user_limits(email, _own_values(limits)):
            raise NotFound(f"No user {email}.")
        user = await self._store.user_by_email(email)
        assert user is not None
        await self._record("user.rate_limits", user.id, {"rate_limits": user.rate_limits or {}})
        return user

    async def set_key_safety(self, key_id: str, safety: SafetyValues | None) -> tuple[ApiKey, User]:
        """Give the key its own content policy (None: none of its own); returns it."""
        if not await self._store.set_key_safety(key_id, _own_values(safety)):
            raise NotFound(f"No key {key_id}.")
        found = await self._store.key_by_id(key_id)
        assert found is not None
        await self._record("key.safety", key_id, {"safety": found[0].safety or {}})
        return found

    async def set_user_safety(self, email: str, safety: SafetyValues | None) -> User:
        """Give the user their own content policy (None: none of their own); returns them."""
        email = normalise_email(email)
        if not await self._store.set_user_safety(email, _own_values(safety)):
            raise NotFound(f"No user {email}.")
        user = await self._store.user_by_email(email)
        assert user is not None
        await self._record("user.safety", user.id, {"safety": user.safety or {}})
        return user

    async def rotate_key(self, key_id: str, grace_s: int) -> tuple[NewKey, ApiKey]:
        """Issue the key's successor (same user, name, rate limits, content policy, zero
        retention and lifetime) and revoke the key `grace_s` seconds from now (0: at once);
        returns the successor, with its secret, and the rotated key."""
        if grace_s < 0:
            raise InvalidRequest("grace must be 0 or more seconds.", param="grace")
        old, user = await self.key(key_id)
        now = int(time.time())
        _check_rotatable(old, now)
        # Its expiry policy is its lifetime: the successor lives as long, from now.
        lifetime = old.expires_at - old.created_at if old.expires_at is not None else None
        key, secret = _new_key(
            user.id,
            old.name,
            lifetime,
            rate_limits=old.rate_limits,
            safety=old.safety,
            zero_retention=old.zero_retention,
        )
        if not await self._store.rotate_key(key_id, key, now + grace_s, now):
            # Revoked or rotated by someone else since it was read just above.
            raise InvalidRequest(f"Key {key_id} was just revoked or rotated.", param="key_id")
        rotated, _ = await self.key(key_id)
        await self._record(
            "key.rotate", key_id, {"successor_id": key.id, "revoked_at": rotated.revoked_at}
        )
        return NewKey(key, secret, user), rotated

    async def set_key_zero_retention(self, key_id: str, enabled: bool) -> tuple[ApiKey, User]:
        """Turn the key's zero data retention on or off; returns it and its owner."""
        if not await self._store.set_key_zero_retention(key_id, enabled):
            raise NotFound(f"No key {key_id}.")
        found = await self.key(key_id)
        await self._record("key.zero_retention", key_id, {"zero_retention": enabled})
        return found

    async def set_user_zero_retention(self, email: str, enabled: bool) -> User:
        """Turn the user's zero data retention (their logins and all their keys) on or off."""
        email = normalise_email(email)
        if not await self._store.set_user_zero_retention(email, enabled):
            raise NotFound(f"No user {email}.")
        user = await self.user(email)
        await self._record("user.zero_retention", user.id, {"zero_retention": enabled})
        return user

    async def principal_for_key(self, secret: str) -> Principal | None:
        """The key's owner, looked up on every request so that a revocation counts at once;
        an expired key is refused with its own code, so that its holder knows to renew it."""
        return await self.principal_for_key_hash(key_digest(secret))

    async def principal_for_key_hash(self, key_hash: str) -> Principal | None:
        """principal_for_key, from the key's digest (a dashboard session keeps only that)."""
        now = int(time.time())
        found = await self._store.active_key(key_hash, now)
        if found is None:
            return None
        if found.expires_at is not None and found.expires_at <= now:
            raise AuthenticationFailed(
                f"The API key provided expired on {_utc(found.expires_at)}. Ask an "
                "administrator for a new one.",
                code="api_key_expired",
            )
        return Principal(
            owner=found.user_id,
            is_admin=found.is_admin,
            email=found.email,
            key_id=found.key_id,
            key_limits=found.key_limits,
            user_limits=found.user_limits,
            key_safety=found.key_safety,
            user_safety=found.user_safety,
            zero_retention=found.zero_retention,
            budget_ids=found.budget_ids,
        )

    async def principal_for_user_id(self, user_id: str) -> Principal | None:
        """The enabled user with this id, as a password sign-in makes them (a dashboard
        session, after its password was checked once)."""
        user = await self._store.user_by_id(user_id)
        return None if user is None or user.disabled else _user_principal(user)

    async def principal_for_password(self, email: str, password: str) -> Principal | None:
        user = await self._store.user_by_email(email.strip().lower())
        if user is None or user.disabled:
            await asyncio.to_thread(_verify, _DUMMY_HASH, password)
            return None
        # Keyed on the stored hash too, so a changed password invalidates the entry.
        remembered = hashlib.sha256(f"{user.password_hash}\0{password}".encode()).hexdigest()
        expiry = self._verified.get(remembered)
        if expiry is None or expiry < time.monotonic():
            if not await asyncio.to_thread(_verify, user.password_hash, password):
                return None
            if len(self._verified) > 10_000:
                self._verified.clear()
            self._verified[remembered] = time.monotonic() + _VERIFIED_TTL_S
        return _user_principal(user)


def _user_principal(user: User) -> Principal:
    return Principal(
        owner=user.id,
        is_admin=user.is_admin,
        email=user.email,
        user_limits=user.rate_limits,
        user_safety=user.safety,
        zero_retention=user.zero_retention,
    )


def user_view(user: User) -> dict[str, Any]:
    """A user as the admin API shows it: never the password hash."""
    return {
        "object": "user",
        "id": user.id,
        "email": user.email,
        "is_admin": user.is_admin,
        "disabled": user.disabled,
        "created_at": user.created_at,
        "rate_limits": user.rate_limits or {},
        "safety": user.safety or {},
        "zero_retention": user.zero_retention,
    }


def key_view(key: ApiKey, user: User, secret: str | None = None) -> dict[str, Any]:
    """A key as the admin API shows it: its hint, and the key itself only when just created."""
    view: dict[str, Any] = {
        "object": "api_key",
        "id": key.id,
        "name": key.name,
        "user_id": user.id,
        "email": user.email,
    }
    if secret is not None:
        view["key"] = secret
    view |= {
        "key_hint": key.key_hint,
        "created_at": key.created_at,
        # A rotated key's is in the future until its grace ends; it works until then.
        "revoked_at": key.revoked_at,
        "expires_at": key.expires_at,
        "successor_id": key.successor_id,
        "rate_limits": key.rate_limits or {},
        "safety": key.safety or {},
        "zero_retention": key.zero_retention,
    }
    return view


def _new_key(
    user_id: str,
    name: str,
    lifetime_s: int | None,
    *,
    rate_limits: dict[str, Any] | None,
    safety: dict[str, Any] | None,
    zero_retention: bool,
) -> tuple[ApiKey, str]:
    """A key row and its secret (the row keeps only its hash and a hint)."""
    secret = "sk-" + secrets.token_urlsafe(32)
    now = int(time.time())
    key = ApiKey(
        id="key_" + secrets.token_hex(12),
        user_id=user_id,
        name=name,
        key_hash=key_digest(secret),
        key_hint=f"{secret[:5]}…{secret[-4:]}",
        created_at=now,
        revoked_at=None,
        rate_limits=rate_limits,
        safety=safety,
        expires_at=now + lifetime_s if lifetime_s is not None else None,
        zero_retention=zero_retention,
        successor_id=None,
    )
    return key, secret


def _check_rotatable(key: ApiKey, now: int) -> None:
    if key.successor_id is not None:
        raise InvalidRequest(
            f"Key {key.id} was already rotated: its successor is {key.successor_id}.",
            param="key_id",
            code="key_already_rotated",
        )
    if key.revoked_at is not None and key.revoked_at <= now:
        raise InvalidRequest(
            f"Key {key.id} is revoked: there is nothing to rotate.",
            param="key_id",
            code="key_revoked",
        )


def _utc(timestamp: int) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _key_details(key: ApiKey, user: User) -> dict[str, Any]:
    """What the audit log keeps about a key: never the key itself nor its hash."""
    return {
        "user_id": user.id,
        "name": key.name,
        "rate_limits": key.rate_limits or {},
        "safety": key.safety or {},
        "expires_at": key.expires_at,
        "zero_retention": key.zero_retention,
    }


def _own_values(values: BaseModel | None) -> dict[str, Any] | None:
    """Only the values set (rate limits or a content policy): the others follow the
    configured defaults. Nothing set is stored as NULL."""
    given = values.model_dump(exclude_none=True) if values is not None else {}
    return given or None


def _verify(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False
