"""`aiservice users …`: the accounts of the configured database, through the same Accounts
service as the admin API. `users limits` is with the other rate-limit commands, in limits.py."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from aiservice.cli.common import (
    ClearSafety,
    ConfigOption,
    ModerationOption,
    PiiOption,
    SwitchArgument,
    ZeroRetentionOption,
    describe_safety,
    out,
    print_table,
    safety_values,
    switch,
    when,
    with_accounts,
    yes,
)
from aiservice.governance.accounts import Accounts
from aiservice.store.tables import User

users_app = typer.Typer(
    help="Users (they log in with Basic auth and own API keys).", no_args_is_help=True
)


@users_app.command("add")
def users_add(
    email: str,
    password: Annotated[str, typer.Option(prompt=True, hide_input=True, confirmation_prompt=True)],
    admin: Annotated[bool, typer.Option(help="May use the admin API.")] = False,
    zero_retention: ZeroRetentionOption = False,
    config: ConfigOption = None,
) -> None:
    """Add a user (prompts for the password when --password is not given)."""
    user = with_accounts(
        config,
        lambda a: a.add_user(email, password, is_admin=admin, zero_retention=zero_retention),
    )
    out.print(
        f"Added {user.email} ({user.id}){' as admin' if user.is_admin else ''}.", soft_wrap=True
    )


@users_app.command("list")
def users_list(config: ConfigOption = None) -> None:
    """List users."""
    table = Table("id", "email", "admin", "disabled", "created", "zero retention", "safety")
    for user in with_accounts(config, lambda a: a.users()):
        table.add_row(
            user.id,
            user.email,
            yes(user.is_admin),
            yes(user.disabled),
            when(user.created_at),
            yes(user.zero_retention),
            describe_safety(user.safety),
        )
    print_table(table)


@users_app.command("disable")
def users_disable(email: str, config: ConfigOption = None) -> None:
    """Disable a user: their password and keys stop working at once."""
    user = with_accounts(config, lambda a: a.disable_user(email))
    out.print(f"Disabled {user.email}.", soft_wrap=True)


@users_app.command("safety")
def users_safety(
    email: str,
    moderation: ModerationOption = None,
    pii: PiiOption = None,
    clear: ClearSafety = False,
    config: ConfigOption = None,
) -> None:
    """Show a user's own content policy (their logins and keys; a key's own values win over
    it), or set it (it replaces their earlier own values)."""
    policy = safety_values(moderation=moderation, pii=pii)

    async def show_or_set(accounts: Accounts) -> User:
        if policy is None and not clear:
            return await accounts.user(email)
        return await accounts.set_user_safety(email, policy)

    user = with_accounts(config, show_or_set)
    out.print(f"{user.email}: {describe_safety(user.safety)}", soft_wrap=True)


@users_app.command("zero-retention")
def users_zero_retention(
    email: str, state: SwitchArgument = None, config: ConfigOption = None
) -> None:
    """Show whether a user has zero data retention (nothing of their requests stored but
    usage, for their logins and all their keys), or turn it on or off."""
    enabled = switch(state)

    async def show_or_set(accounts: Accounts) -> User:
        if enabled is None:
            return await accounts.user(email)
        return await accounts.set_user_zero_retention(email, enabled)

    user = with_accounts(config, show_or_set)
    shown = "on" if user.zero_retention else "off"
    out.print(f"{user.email}: zero retention {shown}", soft_wrap=True)
