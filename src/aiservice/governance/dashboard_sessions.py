"""Signing in to the dashboard: with an API key (the master key included) or an e-mail and
password, a session whose token lives only in the browser's cookie, and the CSRF token its
forms carry. Failed sign-ins count against the same throttle as failed Basic-auth logins."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

from aiservice.errors import AuthenticationFailed
from aiservice.governance.accounts import MASTER, Accounts, Principal, key_digest
from aiservice.governance.login_throttle import LoginThrottle
from aiservice.governance.master_key import MasterKey
from aiservice.store.dashboard_sessions import DashboardSessionStore
from aiservice.store.tables import DashboardSession

# A session's last-seen time is written at most this often: not one UPDATE per page.
_TOUCH_EVERY_S = 60.0


@dataclass(frozen=True, slots=True)
class Viewer:
    """Who is reading the dashboard, and the token every form of theirs must carry."""

    principal: Principal
    csrf_token: str


def csrf_token_of(session_token: str) -> str:
    """The session's CSRF token: derived from the cookie's secret, which a forged request from
    another site cannot read, so it needs no storage of its own."""
    return hashlib.sha256(b"dashboard-csrf\0" + session_token.encode()).hexdigest()


def csrf_matches(expected: str, presented: str | None) -> bool:
    return presented is not None and hmac.compare_digest(expected, presented)


class DashboardSessions:
    """Sessions on the database, so that every process behind a load balancer knows them."""

    def __init__(
        self,
        store: DashboardSessionStore,
        accounts: Accounts,
        throttle: LoginThrottle,
        master_key: Callable[[], MasterKey | None],
        *,
        idle_timeout_s: float,
        max_age_s: float,
    ):
        self._store = store
        self._accounts = accounts
        self._throttle = throttle
        self._master_key = master_key
        self._idle_timeout_s = idle_timeout_s
        self._max_age_s = max_age_s

    async def sign_in_with_key(self, secret: str, address: str) -> str:
        """A new session's token for the holder of this key; AuthenticationFailed if none."""
        secret = secret.strip()
        # Keyed by the guess itself: a wrong key locks out no one else's account.
        account = "key:" + key_digest(secret)[:16]
        await self._throttle.check(account, address)
        master = self._master_key()
        if master is not None and master.matches(secret):
            return await self._open("master", key_hash=key_digest(secret))
        principal = await self._accounts.principal_for_key(secret)
        if principal is None:
            await self._throttle.failed(account, address)
            raise AuthenticationFailed("Incorrect API key provided.")
        return await self._open("key", key_hash=key_digest(secret), user_id=principal.owner)

    async def sign_in_with_password(self, email: str, password: str, address: str) -> str:
        account = email.strip().lower()
        await self._throttle.check(account, address)
        principal = await self._accounts.principal_for_password(account, password)
        if principal is None:
            await self._throttle.failed(account, address)
            raise AuthenticationFailed("Incorrect e-mail or password.", code="invalid_credentials")
        return await self._open("password", user_id=principal.owner)

    async def viewer(self, token: str | None) -> Viewer | None:
        """The session's viewer, looked up again (a revoked key, a disabled user or a changed
        master key ends it); None when there is no such session or it has ended."""
        if not token:
            return None
        token_hash = _token_hash(token)
        row = await self._store.get(token_hash)
        now = time.time()
        if row is None:
            return None
        if now - row.last_seen_at > self._idle_timeout_s or now - row.created_at > self._max_age_s:
            await self._store.delete(token_hash)
            return None
        principal = await self._principal(row)
        if principal is None:
            await self._store.delete(token_hash)
            return None
        if now - row.last_seen_at > _TOUCH_EVERY_S:
            await self._store.touch(token_hash, now)
        return Viewer(principal, csrf_token_of(token))

    async def sign_out(self, token: str | None) -> None:
        if token:
            await self._store.delete(_token_hash(token))

    async def _principal(self, row: DashboardSession) -> Principal | None:
        if row.kind == "master":
            master = self._master_key()
            # The digest is what was presented: the master key's hash, unchanged since.
            return MASTER if master is not None and master.matches_digest(row.key_hash) else None
        if row.kind == "key" and row.key_hash is not None:
            return await self._accounts.principal_for_key_hash(row.key_hash)
        if row.kind == "password" and row.user_id is not None:
            return await self._accounts.principal_for_user_id(row.user_id)
        return None

    async def _open(
        self, kind: str, *, key_hash: str | None = None, user_id: str | None = None
    ) -> str:
        token = secrets.token_urlsafe(32)
        now = time.time()
        await self._store.delete_ended(now - self._idle_timeout_s, now - self._max_age_s)
        await self._store.add(
            DashboardSession(
                token_hash=_token_hash(token),
                kind=kind,
                user_id=user_id,
                key_hash=key_hash,
                created_at=now,
                last_seen_at=now,
            )
        )
        return token


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
