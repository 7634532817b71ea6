"""`aiservice users …`: the accounts of the configured database, through the same Accounts
service as the admin API. `users limits` is with the other rate-limit commands, in limits.py."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from aiservice.cli.common import ConfigOption, out, print_table, when, with_accounts, yes

users_app = typer.Typer(
    help="Users (they log in with Basic auth and own API keys).", no_args_is_help=True
)


@users_app.command("add")
def users_add(
    email: str,
    password: Annotated[str, typer.Option(prompt=True, hide_input=True, confirmation_prompt=True)],
    admin: Annotated[bool, typer.Option(help="May use the admin API.")] = False,
    config: ConfigOption = None,
) -> None:
    """Add a user (prompts for the password when --password is not given)."""
    user = with_accounts(config, lambda a: a.add_user(email, password, is_admin=admin))
    out.print(
        f"Added {user.email} ({user.id}){' as admin' if user.is_admin else ''}.", soft_wrap=True
    )


@users_app.command("list")
def users_list(config: ConfigOption = None) -> None:
    """List users."""
    table = Table("id", "email", "admin", "disabled", "created")
    for user in with_accounts(config, lambda a: a.users()):
        table.add_row(
            user.id, user.email, yes(user.is_admin), yes(user.disabled), when(user.created_at)
        )
    print_table(table)


@users_app.command("disable")
def users_disable(email: str, config: ConfigOption = None) -> None:
    """Disable a user: their password and keys stop working at once."""
    user = with_accounts(config, lambda a: a.disable_user(email))
    out.print(f"Disabled {user.email}.", soft_wrap=True)
