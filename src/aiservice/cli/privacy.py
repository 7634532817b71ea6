"""`aiservice privacy export|erase --subject NAME=VALUE`: the privacy routes of the admin API,
run in this process against the configured database. An erasure runs here to its end (or
takes over the subject's running one); killed, it is taken up again by the next `erase` of
the same subject, or by any worker."""

from __future__ import annotations

import asyncio
import getpass
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from aiservice.cli.common import ConfigOption, err, out, print_table, with_database
from aiservice.governance.audit import Actor, AuditLog, acting_as
from aiservice.services.privacy import erasure_object
from aiservice.services.privacy_erase import build_erasures
from aiservice.services.privacy_export import PrivacyExport
from aiservice.services.privacy_subject import PrivacyRequest, spec_from_cli
from aiservice.store.audit import AuditStore

privacy_app = typer.Typer(
    help="Export or erase everything held about one data subject.", no_args_is_help=True
)

SubjectOption = Annotated[
    str,
    typer.Option(
        help="account=<e-mail>, user=<user or safety_identifier>, or <metadata key>=<value> "
        "(a key of privacy_subject_keys, e.g. user_id=42)."
    ),
]
WithinOption = Annotated[
    str | None,
    typer.Option(help="Only this account's data (an e-mail or user id), for user=/metadata."),
]


def _request(subject: str, within: str | None) -> PrivacyRequest:
    try:
        return PrivacyRequest(subject=spec_from_cli(subject), within=within)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--subject") from None


@privacy_app.command("export")
def export_command(
    subject: SubjectOption,
    out_file: Annotated[
        Path | None, typer.Option("--out", help="Write the NDJSON here (default: stdout).")
    ] = None,
    within: WithinOption = None,
    config: ConfigOption = None,
) -> None:
    """Write every stored object of the subject as NDJSON, one object a line."""
    request = _request(subject, within)

    async def export(settings, database) -> dict[str, int]:  # type: ignore[no-untyped-def]
        audit = AuditLog(AuditStore(database))
        found = await build_erasures(settings, database, audit).subject(request)
        job = PrivacyExport(database, found)
        await audit.record("privacy.export", job.id, {"subject": found.label})
        target = out_file.open("wb") if out_file is not None else sys.stdout.buffer
        try:
            async for line in job.lines():
                await asyncio.to_thread(target.write, line)
        finally:
            if out_file is not None:
                target.close()
            else:
                target.flush()
        return job.counts

    with acting_as(Actor(f"cli:{getpass.getuser()}")):
        counts = with_database(config, export)
    if out_file is not None:
        total = sum(counts.values())
        err.print(f"Exported {total} objects to {out_file}.", soft_wrap=True, highlight=False)


@privacy_app.command("erase")
def erase_command(
    subject: SubjectOption,
    within: WithinOption = None,
    yes: Annotated[
        bool, typer.Option("--yes", help="Erase without asking: it cannot be undone.")
    ] = False,
    config: ConfigOption = None,
) -> None:
    """Delete everything stored about the subject; its usage rows stay, under a pseudonym."""
    request = _request(subject, within)
    if not yes:
        typer.confirm(f"Erase everything held about {subject}? This cannot be undone", abort=True)

    async def erase(settings, database) -> dict:  # type: ignore[no-untyped-def, type-arg]
        erasures = build_erasures(settings, database, AuditLog(AuditStore(database)))
        started = await erasures.start(request, None)
        err.print(f"Erasing ({started['id']})…", soft_wrap=True, highlight=False)
        row = await erasures.run_until_done(started["id"])
        assert row is not None
        return erasure_object(row)

    with acting_as(Actor(f"cli:{getpass.getuser()}")):
        erasure = with_database(config, erase)
    table = Table("kind", "deleted")
    for kind, count in sorted(erasure["deleted"].items()):
        table.add_row(kind, str(count))
    table.add_row("usage.record (pseudonymized)", str(erasure["pseudonymized"]["usage.record"]))
    print_table(table)
    out.print(f"{erasure['id']}: {erasure['status']}", soft_wrap=True, highlight=False)
