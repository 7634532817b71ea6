"""`aiservice email reply|classify|extract|suggest|summary|triage FILE`: the e-mail
assistant on a real message (.eml) or every message of an mbox, through the Python facade
(in this process on $AISERVICE_HOME, or a running server with --server)."""

from __future__ import annotations

import csv
import json
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import Progress
from rich.table import Table

from aiservice.cli.common import err, out
from aiservice.mail import MailMessage, MailReadError, as_prompt_text, read_mbox, read_message

email_app = typer.Typer(help="The e-mail assistant on .eml and mbox files.", no_args_is_help=True)

# The longest prompt text sent for one message: the assistant's prompts fit a small model.
PROMPT_CHARS = 12_000

FileArgument = Annotated[Path, typer.Argument(help="A message (.eml) or a mailbox (mbox).")]
Model = Annotated[str, typer.Option(help="The model to ask.")]
AsJson = Annotated[bool, typer.Option("--json", help="Print the answers as JSON.")]
AsCsv = Annotated[bool, typer.Option("--csv", help="Print one CSV row per message.")]
Server = Annotated[
    str | None,
    typer.Option(
        help="A running aiservice (default: run one in this process, on $AISERVICE_HOME)."
    ),
]
ApiKey = Annotated[
    str | None,
    typer.Option(
        help="API key for --server (default $AISERVICE_API_KEY, then $OPENAI_API_KEY).",
        show_default=False,
    ),
]
Config = Annotated[Path | None, typer.Option(help="TOML configuration file, without --server.")]

# (the facade, the message, the options every call takes) -> the facade's answer
Call = Callable[[Any, MailMessage, dict[str, Any]], dict[str, Any]]
# Each command: the facade call for one message, and the answer's fields a table shows.
_COMMANDS: dict[str, tuple[Call, tuple[str, ...]]] = {
    "reply": (
        lambda ai, m, o: ai.generate_email_response(_text(m), **o),
        ("reply",),
    ),
    "classify": (
        lambda ai, m, o: ai.classify_email(m.subject, _text(m), **o),
        ("category", "reason"),
    ),
    "extract": (
        lambda ai, m, o: ai.extract_meeting_info(_text(m), **o),
        ("meeting",),
    ),
    "suggest": (
        lambda ai, m, o: ai.quick_reply_suggestions(_text(m), **o),
        ("suggestions",),
    ),
    "summary": (
        lambda ai, m, o: ai.summarize_email_thread(_text(m, thread=True), **o),
        ("summary", "action_items"),
    ),
    "triage": (
        lambda ai, m, o: ai.triage_email(_text(m), **o),
        ("priority", "needs_reply", "is_newsletter", "is_cold_outreach"),
    ),
}


def _text(message: MailMessage, *, thread: bool = False) -> str:
    return as_prompt_text(message, include_thread=thread, max_chars=PROMPT_CHARS)


def _messages(path: Path) -> tuple[int | None, Iterator[MailMessage]]:
    """How many messages (None: one .eml) and the messages; MailReadError for a bad file.
    An mbox is read twice, lazily both times: once to count (the progress bar's total)."""
    try:
        with path.open("rb") as file:
            opening = file.read(5)
    except OSError as exc:
        raise MailReadError(f"cannot read it: {exc.strerror}") from None
    if opening == b"From ":
        count = sum(1 for _ in read_mbox(path))
        return count, read_mbox(path)
    return None, iter([read_message(path.read_bytes())])


def _run(command: str, path: Path, model: str, as_json: bool, as_csv: bool, ai: Any) -> int:
    call, fields = _COMMANDS[command]
    options = {"model": model}
    try:
        count, messages = _messages(path)
        if count is None:
            answer = call(ai, next(messages), options)
            _print_one(answer, as_json)
            return 0 if answer.get("success") else 1
        rows = []
        with Progress(console=err, transient=True) as progress:
            task = progress.add_task(f"{command} {path.name}", total=count)
            for message in messages:
                rows.append((message, call(ai, message, options)))
                progress.advance(task)
    except MailReadError as exc:
        err.print(f"{path}: not a message or mailbox aiservice can read: {exc}")
        return 2
    _print_many(command, rows, fields, as_json, as_csv)
    return 0 if all(answer.get("success") for _, answer in rows) else 1


def _print_one(answer: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(answer, ensure_ascii=False, indent=2))
    elif answer.get("success"):
        out.print_json(json.dumps(answer, ensure_ascii=False))
    else:
        err.print(f"failed: {answer.get('error')}")


def _print_many(
    command: str,
    rows: list[tuple[MailMessage, dict[str, Any]]],
    fields: tuple[str, ...],
    as_json: bool,
    as_csv: bool,
) -> None:
    if as_json:
        documents = [
            {"message_id": m.message_id, "subject": m.subject, **answer} for m, answer in rows
        ]
        print(json.dumps(documents, ensure_ascii=False, indent=2))
        return
    columns = ("subject", "success", *fields)
    values = [
        [m.subject, answer.get("success"), *(_cell(answer.get(f)) for f in fields)]
        for m, answer in rows
    ]
    if as_csv:
        writer = csv.writer(sys.stdout)
        writer.writerow(columns)
        writer.writerows(values)
        return
    table = Table(title=f"{command}: {len(rows)} messages")
    for column in columns:
        table.add_column(column)
    for row in values:
        table.add_row(*(str(cell) for cell in row))
    out.print(table)


def _cell(value: Any) -> str:
    if isinstance(value, str) or value is None:
        return value or ""
    return json.dumps(value, ensure_ascii=False)


def _client(server: str | None, api_key: str | None, config: Path | None) -> Any:
    from aiservice.client.facade import AIService  # the SDK and the models: only when run

    if server is None:
        return AIService(config=config)
    key = api_key or os.environ.get("AISERVICE_API_KEY") or os.environ.get("OPENAI_API_KEY")
    if not key:
        err.print("--server needs an API key: --api-key, AISERVICE_API_KEY or OPENAI_API_KEY")
        raise typer.Exit(2)
    return AIService(base_url=server, api_key=key)


def _command(name: str, help_text: str) -> None:
    def command(
        file: FileArgument,
        model: Model = "gpt-4o-mini",
        as_json: AsJson = False,
        as_csv: AsCsv = False,
        server: Server = None,
        api_key: ApiKey = None,
        config: Config = None,
    ) -> None:
        if server is not None and config is not None:
            err.print("--config is for the in-process service; a --server has its own.")
            raise typer.Exit(2)
        with _client(server, api_key, config) as ai:
            raise typer.Exit(_run(name, file, model, as_json, as_csv, ai))

    command.__doc__ = help_text
    email_app.command(name)(command)


for _name, _help in (
    ("reply", "Draft a reply to each message."),
    ("classify", "Classify each message: urgent, important, spam or marketing."),
    ("extract", "Extract the meeting (date, time, place, participants) of each message."),
    ("suggest", "Suggest three short replies to each message."),
    ("summary", "Summarise each thread: decisions, open questions, action items."),
    ("triage", "Triage each message: needs a reply, newsletter, cold outreach, priority."),
):
    _command(_name, _help)
