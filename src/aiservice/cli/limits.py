"""Rate limits from the command line: `aiservice keys limits`, `aiservice users limits` (the
values are stored in the database; a running server reads them with each request) and
`aiservice limits stats` (asked of a running server: the counts live in its memory or Redis).

`keys limits` and `users limits` are plain functions: the package adds them to the keys and
users groups, so that the rate-limit options stay in one place without this module importing
those groups."""

from __future__ import annotations

import os
from typing import Annotated, Any

import httpx
import typer
from rich.table import Table

from aiservice.cli.common import (
    ConfigOption,
    describe_limits,
    err,
    limit_values,
    out,
    print_table,
    settings_or_exit,
    with_accounts,
)
from aiservice.governance.accounts import Accounts
from aiservice.store.tables import User

limits_app = typer.Typer(
    help="Rate limits: what keys and users did recently.", no_args_is_help=True
)

Rpm = Annotated[int | None, typer.Option(min=1, help="Requests per minute.")]
Rpd = Annotated[int | None, typer.Option(min=1, help="Requests per day.")]
Tpm = Annotated[int | None, typer.Option(min=1, help="Tokens per minute.")]
Tpd = Annotated[int | None, typer.Option(min=1, help="Tokens per day.")]
Burst = Annotated[int | None, typer.Option(min=1, help="Requests at once before throttling.")]
PriorityOption = Annotated[
    str | None, typer.Option(help="Default priority of its requests: high, medium or low.")
]
MaxPriority = Annotated[
    str | None, typer.Option(help="Highest priority an x-priority header may ask for.")
]
Clear = Annotated[bool, typer.Option(help="Drop its own values: back to the defaults.")]


def keys_limits(
    key_id: str,
    rpm: Rpm = None,
    rpd: Rpd = None,
    tpm: Tpm = None,
    tpd: Tpd = None,
    burst: Burst = None,
    priority: PriorityOption = None,
    max_priority: MaxPriority = None,
    clear: Clear = False,
    config: ConfigOption = None,
) -> None:
    """Show a key's own rate limits, or set them (they replace its earlier own values)."""
    values = limit_values(
        rpm=rpm, rpd=rpd, tpm=tpm, tpd=tpd, burst=burst, priority=priority,
        max_priority=max_priority,
    )  # fmt: skip

    async def show_or_set(accounts: Accounts) -> dict[str, Any] | None:
        if values is None and not clear:
            return (await accounts.key(key_id))[0].rate_limits
        return (await accounts.set_key_limits(key_id, values))[0].rate_limits

    out.print(f"{key_id}: {describe_limits(with_accounts(config, show_or_set))}", soft_wrap=True)


def users_limits(
    email: str,
    rpm: Rpm = None,
    rpd: Rpd = None,
    tpm: Tpm = None,
    tpd: Tpd = None,
    burst: Burst = None,
    priority: PriorityOption = None,
    max_priority: MaxPriority = None,
    clear: Clear = False,
    config: ConfigOption = None,
) -> None:
    """Show a user's own rate limits (all their requests together), or set them."""
    values = limit_values(
        rpm=rpm, rpd=rpd, tpm=tpm, tpd=tpd, burst=burst, priority=priority,
        max_priority=max_priority,
    )  # fmt: skip

    async def show_or_set(accounts: Accounts) -> User:
        if values is None and not clear:
            return await accounts.user(email)
        return await accounts.set_user_limits(email, values)

    user = with_accounts(config, show_or_set)
    out.print(f"{user.email}: {describe_limits(user.rate_limits)}", soft_wrap=True)


@limits_app.command("stats")
def limits_stats(
    server: Annotated[
        str | None,
        typer.Option(help="The running aiservice (default http://HOST:PORT of the settings)."),
    ] = None,
    api_key: Annotated[
        str | None,
        typer.Option(help="An admin key (default $AISERVICE_MASTER_KEY).", show_default=False),
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Per key and user: requests in the last minute and 24 hours, rejected, queued, average
    wait. Asked of a running server (with Redis, every process's counts)."""
    settings = settings_or_exit(config)
    url = server or f"http://{settings.host}:{settings.port}"
    key = api_key or os.environ.get("AISERVICE_MASTER_KEY")
    if not key:
        err.print("An admin key is needed: --api-key or AISERVICE_MASTER_KEY.")
        raise typer.Exit(2)
    try:
        answer = httpx.get(
            f"{url.rstrip('/')}/v1/admin/ratelimits",
            headers={"Authorization": f"Bearer {key}"},
            timeout=10,
        )
    except httpx.HTTPError as exc:
        err.print(f"Cannot reach {url}: {type(exc).__name__}.", soft_wrap=True)
        raise typer.Exit(1) from None
    if answer.status_code != 200:
        err.print(f"{url} answered {answer.status_code}.", soft_wrap=True)
        raise typer.Exit(1)
    table = Table(
        "subject", "req/min", "req/24h", "tokens/min", "tokens/24h", "rejected", "queued",
        "avg wait ms", "waiting",
    )  # fmt: skip
    for row in answer.json()["data"]:
        wait = row["average_wait_ms"]
        table.add_row(
            row["subject"],
            str(row["requests_last_minute"]),
            str(row["requests_last_day"]),
            str(row["tokens_last_minute"]),
            str(row["tokens_last_day"]),
            str(row["rejected"]),
            str(row["queued"]),
            f"{wait:.1f}" if wait is not None else "",
            str(row["waiting_now"]),
        )
    print_table(table)
