"""`aiservice keys …`: API keys of the configured database's users. A key is shown once, when
it is created: the secret goes to stdout alone, so that a script can capture it, and the
words around it to stderr; `keys rotate` prints the successor it issues the same way. `keys
limits` is with the other rate-limit commands, in limits.py; `keys safety` and `keys
zero-retention` are here, their twins `users safety` and `users zero-retention` in users.py."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

from aiservice.cli.common import (
    ClearSafety,
    ConfigOption,
    ModerationOption,
    PiiOption,
    SwitchArgument,
    ZeroRetentionOption,
    check_budget_options,
    describe_budget,
    describe_limits,
    describe_safety,
    duration_seconds,
    err,
    limit_values,
    out,
    print_table,
    safety_values,
    set_key_budget,
    switch,
    when,
    with_accounts,
    with_budgets,
    yes,
)
from aiservice.governance.accounts import Accounts
from aiservice.governance.durations import DEFAULT_GRACE
from aiservice.store.tables import ApiKey, User

keys_app = typer.Typer(help="API keys (Bearer), owned by users.", no_args_is_help=True)


@keys_app.command("create")
def keys_create(
    email: str,
    name: Annotated[str, typer.Option(help="A label to recognise the key by.")] = "default",
    budget: Annotated[
        float | None, typer.Option(help="Give the key a budget of this many USD per period.")
    ] = None,
    budget_period: Annotated[
        str, typer.Option(help="The budget's period: day, month (UTC) or total.")
    ] = "month",
    rpm: Annotated[int | None, typer.Option(min=1, help="Requests per minute.")] = None,
    rpd: Annotated[int | None, typer.Option(min=1, help="Requests per day.")] = None,
    tpm: Annotated[int | None, typer.Option(min=1, help="Tokens per minute.")] = None,
    tpd: Annotated[int | None, typer.Option(min=1, help="Tokens per day.")] = None,
    burst: Annotated[
        int | None, typer.Option(min=1, help="Requests at once before throttling.")
    ] = None,
    priority: Annotated[
        str | None, typer.Option(help="Default priority of its requests: high, medium, low.")
    ] = None,
    max_priority: Annotated[
        str | None, typer.Option(help="Highest priority an x-priority header may ask for.")
    ] = None,
    moderation: ModerationOption = None,
    pii: PiiOption = None,
    expires: Annotated[
        str | None,
        typer.Option(help="Lifetime, such as 90d, 24h, 30m or 3600s (default: never expires)."),
    ] = None,
    zero_retention: ZeroRetentionOption = False,
    config: ConfigOption = None,
) -> None:
    """Create an API key for a user and print it (it is not shown again). Rate limits and
    content policy not given follow the configured defaults."""
    if budget is not None:
        check_budget_options(budget, budget_period)  # before the key exists
    lifetime_s = duration_seconds(expires, "--expires") if expires is not None else None
    own = limit_values(
        rpm=rpm, rpd=rpd, tpm=tpm, tpd=tpd, burst=burst, priority=priority,
        max_priority=max_priority,
    )  # fmt: skip
    policy = safety_values(moderation=moderation, pii=pii)
    new = with_accounts(
        config,
        lambda a: a.create_key(
            email, name, own, policy, expires_in_s=lifetime_s, zero_retention=zero_retention
        ),
    )
    expiry = f", expiring {when(new.key.expires_at)}" if new.key.expires_at else ""
    err.print(
        f"Created {new.key.id} ({new.key.name}) for {email}{expiry}. Store it now, it is not "
        "shown again:",
        soft_wrap=True,
    )
    out.print(new.secret, highlight=False)
    if budget is not None:
        set_key_budget(config, new.key.id, budget, budget_period)


@keys_app.command("list")
def keys_list(
    email: Annotated[str | None, typer.Argument()] = None, config: ConfigOption = None
) -> None:
    """List API keys, of one user or of everyone."""
    table = Table(
        "id", "user", "name", "key", "created", "revoked", "expires", "zero retention",
        "rate limits", "safety",
    )  # fmt: skip
    for key, user in with_accounts(config, lambda a: a.keys(email)):
        revoked = when(key.revoked_at) if key.revoked_at else ""
        if key.successor_id:  # a rotated key: revoked at the end of its grace
            revoked += f" (rotated to {key.successor_id})"
        table.add_row(
            key.id,
            user.email,
            key.name,
            key.key_hint,
            when(key.created_at),
            revoked,
            when(key.expires_at) if key.expires_at else "never",
            yes(key.zero_retention),
            describe_limits(key.rate_limits),
            describe_safety(key.safety),
        )
    print_table(table)


@keys_app.command("rotate")
def keys_rotate(
    key_id: str,
    grace: Annotated[
        str,
        typer.Option(help="How long the old key keeps working beside the new one (0: none)."),
    ] = DEFAULT_GRACE,
    config: ConfigOption = None,
) -> None:
    """Replace a key: print its successor (same user, name, limits, policy, zero retention,
    lifetime and budget; not shown again) and revoke the old key when the grace ends."""
    grace_s = duration_seconds(grace, "--grace", allow_zero=True)
    new, rotated = with_accounts(config, lambda a: a.rotate_key(key_id, grace_s))
    assert rotated.revoked_at is not None
    ends = "now" if grace_s == 0 else when(rotated.revoked_at)
    err.print(
        f"Rotated {key_id}: it stops working {ends}. Its successor {new.key.id} "
        f"({new.key.name}) works now. Store it now, it is not shown again:",
        soft_wrap=True,
    )
    out.print(new.secret, highlight=False)
    budget = with_budgets(config, lambda b: b.copy_key_budget(key_id, new.key.id))
    if budget is not None:
        err.print(f"Set {describe_budget(budget)}.", soft_wrap=True, highlight=False)


@keys_app.command("revoke")
def keys_revoke(key_id: str, config: ConfigOption = None) -> None:
    """Revoke an API key: it stops working at once."""
    with_accounts(config, lambda a: a.revoke_key(key_id))
    out.print(f"Revoked {key_id}.", soft_wrap=True)


@keys_app.command("safety")
def keys_safety(
    key_id: str,
    moderation: ModerationOption = None,
    pii: PiiOption = None,
    clear: ClearSafety = False,
    config: ConfigOption = None,
) -> None:
    """Show a key's own content policy, or set it (it replaces its earlier own values, and
    wins over its user's)."""
    policy = safety_values(moderation=moderation, pii=pii)

    async def show_or_set(accounts: Accounts) -> dict[str, Any] | None:
        if policy is None and not clear:
            return (await accounts.key(key_id))[0].safety
        return (await accounts.set_key_safety(key_id, policy))[0].safety

    out.print(f"{key_id}: {describe_safety(with_accounts(config, show_or_set))}", soft_wrap=True)


@keys_app.command("zero-retention")
def keys_zero_retention(
    key_id: str, state: SwitchArgument = None, config: ConfigOption = None
) -> None:
    """Show whether a key has zero data retention (nothing of its requests stored but usage),
    or turn it on or off. A user's own (`users zero-retention`) covers all their keys."""
    enabled = switch(state)

    async def show_or_set(accounts: Accounts) -> tuple[ApiKey, User]:
        if enabled is None:
            return await accounts.key(key_id)
        return await accounts.set_key_zero_retention(key_id, enabled)

    key, user = with_accounts(config, show_or_set)
    shown = "on" if key.zero_retention else "off"
    if user.zero_retention and not key.zero_retention:
        shown += f" (on for its user {user.email}, which covers it)"
    out.print(f"{key_id}: zero retention {shown}", soft_wrap=True)
