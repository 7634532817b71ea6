"""`aiservice usage`: the usage ledger's totals as a table, read from the configured database.

It reads what the servers have written: records still in a running server's memory arrive
with its next flush (`ledger_flush_s`, a second by default).
"""

from __future__ import annotations

import asyncio
import time
from typing import Annotated, Any

import typer
from rich.table import Table

from aiservice.cli.common import ConfigOption, err, print_table, settings_or_exit
from aiservice.errors import AIServiceError, InvalidRequest
from aiservice.governance.accounts import normalise_email
from aiservice.services.usage import parse_group_by, parse_time
from aiservice.store.accounts import AccountStore
from aiservice.store.database import Database, database_url
from aiservice.store.migrate import upgrade_database
from aiservice.store.usage import UsageQuery, UsageStore

TOTAL_COLUMNS = ("requests", "input_tokens", "output_tokens", "total_tokens", "cost_usd", "errors")


def usage_command(
    since: Annotated[
        str | None,
        typer.Option(
            metavar="WHEN", help="From: unix seconds, an ISO date or date-time, or 7d/24h/30m ago."
        ),
    ] = None,
    until: Annotated[
        str | None,
        typer.Option(metavar="WHEN", help="Up to (excluded), in the same forms as --since."),
    ] = None,
    by: Annotated[
        list[str] | None,
        typer.Option(
            metavar="GROUP",
            help="Group by day, model, key, user, route, endpoint or metadata.<key>; repeat "
            "the option or separate with commas.",
        ),
    ] = None,
    user: Annotated[
        str | None,
        typer.Option(
            metavar="USER",
            help="Only this user's requests: an e-mail, or an owner id such as admin.",
        ),
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Show requests, tokens, cost and errors from the usage ledger, with a totals row."""
    settings = settings_or_exit(config)
    settings.home.mkdir(parents=True, exist_ok=True)
    url = database_url(settings)
    upgrade_database(url)

    async def read() -> tuple[UsageQuery, list[dict[str, Any]]]:
        database = Database(url)
        try:
            now = time.time()
            query = UsageQuery(
                since=parse_time(since, "--since", now) if since else 0.0,
                until=parse_time(until, "--until", now) if until else None,
                owner=await _owner(database, user) if user is not None else None,
                group_by=parse_group_by(by or (), "--by"),
            )
            return query, await UsageStore(database).totals(query)
        finally:
            await database.close()

    try:
        query, rows = asyncio.run(read())
    except AIServiceError as exc:
        err.print(f"[red]{exc.message}[/red]", highlight=False, soft_wrap=True)
        raise typer.Exit(2 if isinstance(exc, InvalidRequest) else 1) from None
    print_table(_table(query.group_by, rows))


async def _owner(database: Database, user: str) -> str:
    """A user's owner id: looked up by e-mail, or taken as it is (admin, user_…)."""
    if "@" not in user:
        return user
    found = await AccountStore(database).user_by_email(normalise_email(user))
    if found is None:
        raise AIServiceError(f"No user {user}.")
    return found.id


def _table(groups: tuple[str, ...], rows: list[dict[str, Any]]) -> Table:
    table = Table(*groups, "requests", "input", "output", "total", "cost (USD)", "errors")
    for column in table.columns[len(groups) :]:
        column.justify = "right"
    summed = {name: sum(row[name] for row in rows) for name in TOTAL_COLUMNS}
    if not groups:  # the totals are the only row
        table.add_row(*_totals(summed))
        return table
    for row in rows:
        table.add_row(*[_text(row[name]) for name in groups], *_totals(row))
    table.add_section()
    table.add_row("total", *[""] * (len(groups) - 1), *_totals(summed), style="bold")
    return table


def _totals(row: dict[str, Any]) -> list[str]:
    return [
        str(row["requests"]),
        str(row["input_tokens"]),
        str(row["output_tokens"]),
        str(row["total_tokens"]),
        f"{row['cost_usd']:.6f}",
        str(row["errors"]),
    ]


def _text(value: object) -> str:
    return "(none)" if value is None else str(value)
