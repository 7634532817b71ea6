"""`aiservice audit`: the audit log, newest first, as GET /v1/admin/audit lists it. Reading it
is not audited; the CLI's own changes are, as done by `cli:<os user>` (cli/common.py)."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.table import Table

from aiservice.cli.common import ConfigOption, out, print_table, when, with_database
from aiservice.governance.audit import AuditLog
from aiservice.store.audit import AuditQuery, AuditStore


def audit_command(
    action: Annotated[str | None, typer.Option(help="Only this action (key.create, …).")] = None,
    actor: Annotated[
        str | None, typer.Option(help="Only this actor (user_…, admin, cli:<os user>).")
    ] = None,
    target: Annotated[str | None, typer.Option(help="Only this target (a key's id, …).")] = None,
    since: Annotated[int | None, typer.Option(min=0, help="From this time (unix s).")] = None,
    until: Annotated[int | None, typer.Option(min=0, help="Up to this time (unix s).")] = None,
    limit: Annotated[int, typer.Option(min=1, max=100, help="How many, newest first.")] = 20,
    after: Annotated[
        str | None, typer.Option(help="Older than this entry (its id): the next page.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the list object.")] = False,
    config: ConfigOption = None,
) -> None:
    """List the audit log: who did which admin action, on what, when."""
    query = AuditQuery(actor, action, target, since, until, after, limit)
    page: dict[str, Any] = with_database(
        config, lambda _, database: AuditLog(AuditStore(database)).entries(query)
    )
    if as_json:
        print(json.dumps(page, indent=2))
        return
    table = Table("id", "when", "actor", "action", "target", "request id", "details")
    for entry in page["data"]:
        table.add_row(
            entry["id"],
            when(entry["created_at"]),
            entry["actor"],
            entry["action"],
            entry["target"],
            entry["request_id"] or "",
            json.dumps(entry["details"], sort_keys=True) if entry["details"] else "",
        )
    print_table(table)
    if page["has_more"]:
        out.print(f"More: --after {page['last_id']}", soft_wrap=True, highlight=False)
