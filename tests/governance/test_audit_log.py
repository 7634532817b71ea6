"""The audit log's service side (governance/audit.py): the actor comes from the context, and
every change Accounts and Budgets make is recorded once, by whoever acts, with nothing secret;
a refused change and a read record nothing."""

from __future__ import annotations

import asyncio
import getpass
import json
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from aiservice.errors import AIServiceError
from aiservice.governance.accounts import Accounts
from aiservice.governance.audit import Actor, AuditLog, acting_as, cli_actor, current_actor
from aiservice.governance.budgets import build_budgets
from aiservice.settings import LimitValues, SafetyValues, Settings
from aiservice.store.accounts import AccountStore
from aiservice.store.audit import AuditQuery, AuditStore
from aiservice.store.database import Database
from aiservice.store.migrate import upgrade_database

PASSWORD = "a-long-enough-password"
ADMIN = Actor("user_admin0001", "req_fixed")


@dataclass
class Audited:
    log: AuditLog
    accounts: Accounts
    database: Database

    async def rows(self) -> list[dict]:
        """Every entry, oldest first."""
        return list(reversed((await self.log.entries(AuditQuery(limit=100)))["data"]))


@pytest.fixture
async def audited(tmp_path: Path) -> AsyncIterator[Audited]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'audit.db'}"
    with ThreadPoolExecutor(max_workers=1) as pool:  # Alembic runs a loop of its own
        pool.submit(upgrade_database, url).result()
    database = Database(url)
    log = AuditLog(AuditStore(database))
    try:
        yield Audited(log, Accounts(AccountStore(database), log), database)
    finally:
        await database.close()


async def test_the_actor_is_the_contexts_and_system_by_default() -> None:
    assert current_actor() == Actor("system")
    with acting_as(ADMIN):
        assert current_actor() == ADMIN
        with acting_as(Actor("admin")):
            assert current_actor() == Actor("admin")
        assert current_actor() == ADMIN

        # A task started inside the block (a background write) inherits the actor.
        async def seen() -> Actor:
            return current_actor()

        assert await asyncio.create_task(seen()) == ADMIN
    assert current_actor() == Actor("system")
    assert cli_actor() == Actor(f"cli:{getpass.getuser()}")


async def test_every_account_change_is_recorded_once_by_its_actor(audited: Audited) -> None:
    accounts = audited.accounts
    with acting_as(ADMIN):
        user = await accounts.add_user("ann@example.com", PASSWORD)
        new = await accounts.create_key("ann@example.com", "ci", LimitValues(rpm=5))
        await accounts.set_key_limits(new.key.id, LimitValues(rpm=9))
        await accounts.set_user_limits("ann@example.com", LimitValues(tpd=100))
        await accounts.set_key_safety(new.key.id, SafetyValues(pii="redact"))
        await accounts.set_user_safety("ann@example.com", SafetyValues(moderation="block"))
        await accounts.revoke_key(new.key.id)
        await accounts.disable_user("ann@example.com")
    rows = await audited.rows()
    assert [(row["action"], row["target"]) for row in rows] == [
        ("user.create", user.id),
        ("key.create", new.key.id),
        ("key.rate_limits", new.key.id),
        ("user.rate_limits", user.id),
        ("key.safety", new.key.id),
        ("user.safety", user.id),
        ("key.revoke", new.key.id),
        ("user.disable", user.id),
    ]
    assert {(row["actor"], row["request_id"]) for row in rows} == {("user_admin0001", "req_fixed")}
    assert rows[1]["details"]["rate_limits"] == {"rpm": 5}
    assert rows[2]["details"] == {"rate_limits": {"rpm": 9}}
    assert rows[4]["details"] == {"safety": {"pii": "redact"}}
    everything = json.dumps(rows)
    # Nothing secret, and no e-mail address (an erased account must leave none behind).
    for secret in (PASSWORD, new.secret, new.key.key_hash, user.password_hash, "ann@example"):
        assert secret not in everything


async def test_refused_changes_and_reads_record_nothing(audited: Audited) -> None:
    accounts = audited.accounts
    await accounts.add_user("bob@example.com", PASSWORD)
    before = await audited.rows()
    for change in (
        accounts.add_user("bob@example.com", PASSWORD),  # a duplicate
        accounts.add_user("carl@example.com", "short"),
        accounts.disable_user("nobody@example.com"),
        accounts.create_key("nobody@example.com"),
        accounts.revoke_key("key_unknown"),
        accounts.set_key_limits("key_unknown", LimitValues(rpm=1)),
        accounts.set_user_safety("nobody@example.com", SafetyValues(pii="off")),
    ):
        with pytest.raises(AIServiceError):
            await change
    await accounts.users()
    await accounts.keys()
    await accounts.user("bob@example.com")
    assert await audited.rows() == before
    # Outside any request or CLI command, the actor is the system.
    assert [row["actor"] for row in before] == ["system"]


async def test_budget_changes_are_recorded(audited: Audited, tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    budgets = build_budgets(settings, audited.database, None, audited.log)
    user = await audited.accounts.add_user("dee@example.com", PASSWORD)
    with acting_as(Actor("admin", "req_budget")):
        budget = await budgets.put(user="dee@example.com", amount_usd=12.5, period="day")
        with pytest.raises(AIServiceError):
            await budgets.put(user="nobody@example.com", amount_usd=1)
        with pytest.raises(AIServiceError):
            await budgets.delete("budget_unknown")
        await budgets.delete(budget.id)
    rows = [row for row in await audited.rows() if row["action"].startswith("budget.")]
    assert [(row["action"], row["target"], row["actor"]) for row in rows] == [
        ("budget.set", budget.id, "admin"),
        ("budget.delete", budget.id, "admin"),
    ]
    assert rows[0]["details"] == {
        "scope": "user",
        "subject_id": user.id,
        "amount_usd": 12.5,
        "period": "day",
        "soft": False,
    }
    assert rows[0]["request_id"] == "req_budget"
    await budgets.close()
