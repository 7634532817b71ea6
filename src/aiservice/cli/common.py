"""What the command modules share, so that each command reads and fails the same way: the
--config option, settings and database access with their exit codes (2: a configuration that
does not load, 1: an error of the services), and tables and times printed alike.

The command modules import from here and from the rest of aiservice, never from each other or
from the package: the package puts them together, nothing points back at it. That is why the
few pieces of rate limits and budgets that `keys create` shares with `limits.py` and
`budgets.py` are here too, and the content-policy options of `keys` and `users`."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from pydantic import BaseModel, ValidationError
from rich.console import Console
from rich.measure import Measurement
from rich.table import Table

from aiservice.errors import AIServiceError, InvalidRequest
from aiservice.governance.accounts import Accounts
from aiservice.governance.audit import AuditLog, acting_as, cli_actor
from aiservice.governance.budget_periods import PERIODS
from aiservice.governance.budgets import Budgets, build_budgets, usd
from aiservice.governance.durations import parse_duration
from aiservice.settings import ConfigError, LimitValues, SafetyValues, Settings, load_settings
from aiservice.store.accounts import AccountStore
from aiservice.store.audit import AuditStore
from aiservice.store.database import Database, database_url
from aiservice.store.migrate import upgrade_database
from aiservice.store.tables import Budget

T = TypeVar("T")
Own = TypeVar("Own", bound=BaseModel)  # a key's or a user's own values: LimitValues, ...
err = Console(stderr=True)
out = Console()

ConfigOption = Annotated[
    Path | None,
    typer.Option(help="TOML configuration file (default $AISERVICE_HOME/config.toml)."),
]


def settings_or_exit(config: Path | None) -> Settings:
    # soft_wrap: Rich otherwise breaks lines at the terminal width (80 when piped), which
    # split "FILE: models[0].path: ..." across lines for anyone grepping the output.
    try:
        return load_settings(config)
    except ConfigError as exc:
        err.print(f"[red]Invalid configuration[/red]\n{exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None


def with_database(config: Path | None, work: Callable[[Settings, Database], Awaitable[T]]) -> T:
    """Run `work` against the configured database, migrated first; API errors exit with 1.
    What it changes is audited as done by `cli:<os user>`."""
    settings = settings_or_exit(config)
    settings.home.mkdir(parents=True, exist_ok=True)
    url = database_url(settings)
    upgrade_database(url)

    async def run() -> T:
        database = Database(url)
        try:
            with acting_as(cli_actor()):
                return await work(settings, database)
        finally:
            await database.close()

    try:
        return asyncio.run(run())
    except AIServiceError as exc:
        err.print(f"[red]{exc.message}[/red]", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None


def with_accounts(config: Path | None, work: Callable[[Accounts], Awaitable[T]]) -> T:
    return with_database(
        config,
        lambda _, database: work(Accounts(AccountStore(database), AuditLog(AuditStore(database)))),
    )


def with_budgets(config: Path | None, work: Callable[[Budgets], Awaitable[T]]) -> T:
    """Run `work` on the budgets of the configured database; API errors exit with 1."""
    # No ledger: this process spends nothing; what it reads is what is written.
    return with_database(
        config,
        lambda settings, database: work(
            build_budgets(settings, database, None, AuditLog(AuditStore(database)))
        ),
    )


def print_table(table: Table) -> None:
    """Print the table at its natural width: ids and e-mails are never cut or wrapped (Rich
    would fit it to the terminal, 80 columns when piped, and `keys revoke` needs whole ids)."""
    natural = Measurement.get(out, out.options.update(width=100_000), table).maximum
    Console(width=max(out.width, natural)).print(table)


def yes(flag: bool) -> str:
    return "yes" if flag else ""


def when(timestamp: int) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M UTC")


def limit_values(**values: Any) -> LimitValues | None:
    """The rate-limit options given, as the stored shape; None when none was given."""
    return _own_values(LimitValues, values)


def describe_limits(values: dict[str, Any] | None) -> str:
    return _describe_own(LimitValues, values)


# Plain strings checked by SafetyValues (as the priorities are by LimitValues), so that a bad
# value is refused by the same rule as in the admin API.
ModerationOption = Annotated[
    str | None, typer.Option(help="Moderation of its requests: off, score or block.")
]
PiiOption = Annotated[
    str | None, typer.Option(help="Personal data in its requests: off, flag or redact.")
]
ClearSafety = Annotated[bool, typer.Option(help="Drop its own policy: back to the configured one.")]


def safety_values(**values: str | None) -> SafetyValues | None:
    """The content-policy options given, as the stored shape; None when none was given."""
    return _own_values(SafetyValues, values)


def describe_safety(values: dict[str, Any] | None) -> str:
    """A key's or a user's own policy; "defaults": the configured one."""
    return _describe_own(SafetyValues, values)


ZeroRetentionOption = Annotated[
    bool, typer.Option(help="Zero data retention: store nothing of its requests but usage.")
]
SwitchArgument = Annotated[
    str | None, typer.Argument(help="on or off; omitted: show the current setting.")
]


def switch(value: str | None) -> bool | None:
    """`on`/`off` of a command like `keys zero-retention KEY on`; None: not given."""
    if value is None:
        return None
    if value.lower() not in ("on", "off"):
        raise typer.BadParameter(f"on or off, not {value!r}")
    return value.lower() == "on"


def duration_seconds(value: str, option: str, *, allow_zero: bool = False) -> int:
    """A duration option (`--expires 90d`, `--grace 24h`) in seconds; refused as bad usage."""
    try:
        return parse_duration(value, param=option.removeprefix("--"), allow_zero=allow_zero)
    except InvalidRequest as exc:
        raise typer.BadParameter(exc.message, param_hint=option) from None


def _own_values(model: type[Own], values: dict[str, Any]) -> Own | None:
    given = {name: value for name, value in values.items() if value is not None}
    if not given:
        return None
    try:
        return model(**given)
    except ValidationError as exc:
        problem = exc.errors()[0]
        raise typer.BadParameter(f"--{problem['loc'][0]}: {problem['msg']}") from None


def _describe_own(model: type[BaseModel], values: dict[str, Any] | None) -> str:
    # In the model's order: PostgreSQL's JSONB keeps an object's keys in an order of its own.
    values = values or {}
    shown = [f"{name}={values[name]}" for name in model.model_fields if name in values]
    return ", ".join(shown) or "defaults"


def describe_budget(budget: Budget) -> str:
    kind = "soft " if budget.soft else ""
    return (
        f"{budget.id}: {kind}{budget.period} budget of {usd(budget.amount_usd)} "
        f"for {budget.scope} {budget.subject_id}"
    )


def check_budget_options(amount: float, period: str) -> None:
    """For `keys create --budget`: refuse bad values before the key is made."""
    if not amount > 0:
        raise typer.BadParameter("must be a positive amount of USD", param_hint="--budget")
    if period not in PERIODS:
        raise typer.BadParameter(f"one of {', '.join(PERIODS)}", param_hint="--budget-period")


def set_key_budget(config: Path | None, key_id: str, amount: float, period: str) -> None:
    budget = with_budgets(config, lambda b: b.put(key=key_id, amount_usd=amount, period=period))
    err.print(f"Set {describe_budget(budget)}.", soft_wrap=True, highlight=False)


def proxy_options(settings: Settings) -> dict[str, Any]:
    """uvicorn's options for forwarded headers: believed from `trusted_proxies` only (uvicorn
    alone would believe any 127.0.0.1 peer, or FORWARDED_ALLOW_IPS)."""
    if not settings.trusted_proxies:
        return {"proxy_headers": False}
    return {"proxy_headers": True, "forwarded_allow_ips": list(settings.trusted_proxies)}
