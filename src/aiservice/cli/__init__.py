"""The `aiservice` command (the console script and `python -m aiservice` run `app`).

Each group of commands is a module of its own, sharing only cli/common.py; they are put
together here and nowhere else, so that none of them imports this package or another group.
The order below is the order of `aiservice --help`."""

from __future__ import annotations

import typer

from aiservice.cli.analyze import analyze_command
from aiservice.cli.audit import audit_command
from aiservice.cli.batch import batch_app
from aiservice.cli.budgets import alerts_app, budgets_app
from aiservice.cli.chat import chat_command
from aiservice.cli.email import email_app
from aiservice.cli.keys import keys_app
from aiservice.cli.limits import keys_limits, limits_app, users_limits
from aiservice.cli.privacy import privacy_app
from aiservice.cli.server import db_app, purge, serve, worker_command
from aiservice.cli.usage import usage_command
from aiservice.cli.users import users_app

app = typer.Typer(
    help="aiservice: a self-hosted, OpenAI-compatible AI service.", no_args_is_help=True
)


@app.callback()
def main() -> None:
    """aiservice command line."""


app.command()(serve)
app.command("worker")(worker_command)
app.command()(purge)
app.command("chat")(chat_command)
app.command("analyze")(analyze_command)
app.command("usage")(usage_command)
app.command("audit")(audit_command)

users_app.command("limits")(users_limits)
keys_app.command("limits")(keys_limits)

app.add_typer(db_app, name="db")
app.add_typer(users_app, name="users")
app.add_typer(keys_app, name="keys")
app.add_typer(budgets_app, name="budgets")
app.add_typer(alerts_app, name="alerts")
app.add_typer(limits_app, name="limits")
app.add_typer(email_app, name="email")
app.add_typer(batch_app, name="batch")
app.add_typer(privacy_app, name="privacy")
