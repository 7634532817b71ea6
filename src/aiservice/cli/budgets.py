"""`aiservice budgets …` and `aiservice alerts list`: thin commands over the budget service the
admin API uses. A running server sees a change within `budget_refresh_s`."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from aiservice.cli.common import (
    ConfigOption,
    describe_budget,
    out,
    print_table,
    when,
    with_budgets,
    yes,
)
from aiservice.governance.budget_periods import PERIODS
from aiservice.governance.budgets import Budgets, usd

budgets_app = typer.Typer(help="Spending budgets of users and API keys.", no_args_is_help=True)
alerts_app = typer.Typer(help="Budget alerts (50, 80 and 100 %).", no_args_is_help=True)


def _period(value: str) -> str:
    if value not in PERIODS:
        raise typer.BadParameter(f"one of {', '.join(PERIODS)}")
    return value


PeriodOption = Annotated[
    str, typer.Option(callback=_period, help="day or month (UTC calendar), or total.")
]


@budgets_app.command("set")
def budgets_set(
    amount: Annotated[float, typer.Option(min=0.0, help="USD per period.")],
    user: Annotated[str | None, typer.Option(help="A user's e-mail (or id).")] = None,
    key: Annotated[str | None, typer.Option(help="An API key's id (key_…).")] = None,
    period: PeriodOption = "month",
    soft: Annotated[bool, typer.Option(help="Only alert; never refuse requests.")] = False,
    config: ConfigOption = None,
) -> None:
    """Set the budget of a user or a key, replacing the one it had."""
    budget = with_budgets(
        config,
        lambda b: b.put(user=user, key=key, amount_usd=amount, period=period, soft=soft),
    )
    out.print(f"Set {describe_budget(budget)}.", soft_wrap=True, highlight=False)


@budgets_app.command("list")
def budgets_list(config: ConfigOption = None) -> None:
    """List budgets with what each has spent in its current period."""

    async def views(service: Budgets) -> list[dict]:
        return [await service.view(budget) for budget in await service.budgets()]

    table = Table("id", "scope", "subject", "period", "amount", "spent", "soft", "resets")
    for view in with_budgets(config, views):
        table.add_row(
            view["id"],
            view["scope"],
            view["subject_id"],
            view["period"],
            usd(view["amount_usd"]),
            usd(view["spent_usd"]),
            yes(view["soft"]),
            when(view["resets_at"]) if view["resets_at"] else "never",
        )
    print_table(table)


@budgets_app.command("delete")
def budgets_delete(budget_id: str, config: ConfigOption = None) -> None:
    """Delete a budget: its user or key may spend without limit again."""
    with_budgets(config, lambda b: b.delete(budget_id))
    out.print(f"Deleted {budget_id}.", soft_wrap=True)


@alerts_app.command("list")
def alerts_list(
    limit: Annotated[int, typer.Option(min=1, max=1000, help="How many, newest first.")] = 50,
    config: ConfigOption = None,
) -> None:
    """List the latest budget alerts, newest first."""
    table = Table(
        "id", "budget", "scope", "subject", "threshold", "spent", "amount", "when", "sent"
    )
    for alert in with_budgets(config, lambda b: b.alerts(limit)):
        table.add_row(
            alert["id"],
            alert["budget_id"],
            alert["scope"],
            alert["subject_id"],
            f"{alert['threshold']}%",
            usd(alert["spent_usd"]),
            usd(alert["amount_usd"]),
            when(alert["created_at"]),
            yes(alert["delivered"]),
        )
    print_table(table)
