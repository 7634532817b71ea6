"""`aiservice batch submit|list|get|cancel|download`: OpenAI's Batch API from the command line.

Every command talks to the Files and Batch APIs through the official openai SDK: to a running
server with --server, otherwise to aiservice started in this process on $AISERVICE_HOME, as
`aiservice chat` does (the same EmbeddedServer), with a worker: `submit --wait` runs the batch
in this process. A batch left behind (no --wait, or Ctrl-C) goes on wherever `aiservice serve`
or `aiservice worker` runs on the same home. The SDK is imported when a command runs: it is
slow to import.

Exit status: 0 done (`submit --wait`: the batch completed), 1 the batch ended failed, expired
or cancelled, 2 an error (unknown id, server unreachable, unreadable file, refused request),
130 `submit --wait` detached by Ctrl-C (the batch goes on).
"""

from __future__ import annotations

import itertools
import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from aiservice.cli.common import err, print_table, settings_or_exit, when
from aiservice.store.batch_status import FINAL, BatchStatus

if TYPE_CHECKING:
    from openai import OpenAI
    from openai.types import Batch

batch_app = typer.Typer(help="Batches of requests: OpenAI's Batch API.", no_args_is_help=True)

EXIT_ERROR = 2
EXIT_DETACHED = 130  # the shell's code for Ctrl-C: the batch's outcome is not known yet
PAGE_MAX = 100  # the most batches GET /v1/batches gives in one page
FIRST_POLL_S, MAX_POLL_S = 0.25, 2.0  # quick batches end quickly; long ones are polled gently
ERRORS_SHOWN = 5  # a refused input file may have an error per line: the first few say enough

Server = Annotated[
    str | None,
    typer.Option(
        help="A running aiservice, e.g. http://127.0.0.1:5000 (default: run one in this "
        "process, on $AISERVICE_HOME)."
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
AsJson = Annotated[bool, typer.Option("--json", help="Print the server's JSON.")]
BatchId = Annotated[str, typer.Argument(help="The batch's id (batch_...).")]


class BatchCommandError(Exception):
    """Ends the command with this one-line message on stderr and exit status 2."""


# --- the commands --------------------------------------------------------------------------


@batch_app.command("submit")
def submit_command(
    file: Annotated[Path, typer.Argument(help="The requests, one JSON object a line (.jsonl).")],
    endpoint: Annotated[
        str, typer.Option(help="Where every line goes, e.g. /v1/chat/completions.")
    ],
    window: Annotated[
        str, typer.Option(help="The completion window: 24h, or e.g. 30m or 2h (up to 7 days).")
    ] = "24h",
    metadata: Annotated[
        list[str] | None,
        typer.Option(metavar="KEY=VALUE", help="Metadata of the batch; repeat for more."),
    ] = None,
    wait: Annotated[
        bool,
        typer.Option(
            "--wait", help="Follow the batch to its end (Ctrl-C detaches, never cancels)."
        ),
    ] = False,
    server: Server = None,
    api_key: ApiKey = None,
    config: Config = None,
) -> None:
    """Upload FILE, start a batch of its requests and print the batch's id."""
    pairs = _metadata_pairs(metadata or [])
    stream = _open_input(file)

    def work(client: OpenAI) -> int:
        with stream:
            uploaded = client.files.create(file=(file.name, stream), purpose="batch")
        batch = client.batches.create(
            input_file_id=uploaded.id,
            endpoint=endpoint,  # type: ignore[arg-type]  # the SDK's Literal lags the API
            completion_window=window,  # type: ignore[arg-type]  # OpenAI takes "24h" only
            **({"metadata": pairs} if pairs else {}),
        )
        print(batch.id, flush=True)
        if not wait:
            return 0
        try:
            batch = _follow(client, batch)
        except KeyboardInterrupt:
            err.print(f"Detached; the batch goes on: {batch.id}", highlight=False, soft_wrap=True)
            return EXIT_DETACHED
        _print_description(batch, _cost_so_far(client, batch))
        return 0 if batch.status == BatchStatus.COMPLETED else 1

    _run(server, api_key, config, work)


@batch_app.command("list")
def list_command(
    limit: Annotated[int, typer.Option(min=1, help="How many batches, newest first.")] = 20,
    as_json: AsJson = False,
    server: Server = None,
    api_key: ApiKey = None,
    config: Config = None,
) -> None:
    """List batches, newest first: a table, or with --json a JSON array of batch objects."""

    def work(client: OpenAI) -> int:
        pages = client.batches.list(limit=min(limit, PAGE_MAX))  # iterating fetches the next
        batches = list(itertools.islice(pages, limit))
        if as_json:
            _print_json([batch.model_dump(mode="json") for batch in batches])
        elif not batches:
            err.print("No batches.")
        else:
            print_table(_list_table(batches))
        return 0

    _run(server, api_key, config, work)


@batch_app.command("get")
def get_command(
    batch_id: BatchId,
    as_json: AsJson = False,
    server: Server = None,
    api_key: ApiKey = None,
    config: Config = None,
) -> None:
    """Show a batch: its status, request counts, tokens, cost and files."""

    def work(client: OpenAI) -> int:
        batch = client.batches.retrieve(batch_id)
        if as_json:
            _print_json(batch.model_dump(mode="json"))
        else:
            _print_description(batch, _cost_so_far(client, batch))
        return 0

    _run(server, api_key, config, work)


@batch_app.command("cancel")
def cancel_command(
    batch_id: BatchId, server: Server = None, api_key: ApiKey = None, config: Config = None
) -> None:
    """Cancel a batch: lines not started are not run, running ones finish."""

    def work(client: OpenAI) -> int:
        batch = client.batches.cancel(batch_id)
        print(f"{batch.id}: {batch.status}", flush=True)
        return 0

    _run(server, api_key, config, work)


@batch_app.command("download")
def download_command(
    batch_id: BatchId,
    out: Annotated[Path, typer.Option(help="The directory to write to (made if missing).")] = Path(
        "."
    ),
    server: Server = None,
    api_key: ApiKey = None,
    config: Config = None,
) -> None:
    """Write the batch's output and error files (those it has) as ID_output.jsonl and
    ID_errors.jsonl into --out, and print their paths."""

    def work(client: OpenAI) -> int:
        batch = client.batches.retrieve(batch_id)
        files = [
            (file_id, out / f"{batch.id}_{kind}.jsonl")
            for file_id, kind in ((batch.output_file_id, "output"), (batch.error_file_id, "errors"))
            if file_id
        ]
        if not files:
            raise BatchCommandError(
                f"The batch {batch.id} has no output or error file (it is {batch.status})."
            )
        out.mkdir(parents=True, exist_ok=True)
        for file_id, path in files:
            with client.files.with_streaming_response.content(file_id) as response:
                response.stream_to_file(path)
            print(path, flush=True)
        return 0

    _run(server, api_key, config, work)


# --- reaching the server, and failing in one line ------------------------------------------


def _run(
    server: str | None, api_key: str | None, config: Path | None, work: Callable[[OpenAI], int]
) -> NoReturn:
    """Run `work` with a client of the server; its result is the exit status. Every error
    ends as one line on stderr and exit status 2, never a traceback."""
    import openai

    from aiservice.chat.session import error_message

    try:
        with _client(server, api_key, config) as client:
            status = work(client)
    except openai.APIError as exc:
        _fail(error_message(exc))
    except BatchCommandError as exc:
        _fail(str(exc))
    except OSError as exc:  # a directory or file of the command's own
        _fail(f"{exc.filename}: {exc.strerror}" if exc.filename else str(exc))
    except KeyboardInterrupt:  # e.g. while the in-process server starts
        err.print()
        status = EXIT_DETACHED
    raise typer.Exit(status)


def _fail(message: str) -> NoReturn:
    err.print(message, style="red", highlight=False, soft_wrap=True)
    raise typer.Exit(EXIT_ERROR)


@contextmanager
def _client(server: str | None, api_key: str | None, config: Path | None) -> Iterator[OpenAI]:
    if server is not None:
        if config is not None:
            raise BatchCommandError(
                "--config is for the in-process service; a --server has its own."
            )
        key = api_key or os.environ.get("AISERVICE_API_KEY") or os.environ.get("OPENAI_API_KEY")
        if not key:
            raise BatchCommandError(
                "--server needs an API key: --api-key, AISERVICE_API_KEY or OPENAI_API_KEY"
            )
        with _sdk(server, key) as sdk:
            yield sdk
        return
    if api_key is not None:
        raise BatchCommandError(
            "--api-key is for --server; without it aiservice runs in this process"
        )
    settings = settings_or_exit(config)
    from aiservice.chat.embedded_server import EmbeddedServer, EmbeddedServerError

    err.print("(starting aiservice in this process…)", highlight=False)
    try:
        with (
            EmbeddedServer(settings, worker=True) as embedded,
            _sdk(embedded.base_url, embedded.api_key) as sdk,
        ):
            yield sdk
    except EmbeddedServerError as exc:
        raise BatchCommandError(str(exc)) from None


def _sdk(server: str, api_key: str) -> OpenAI:
    from openai import OpenAI

    base_url = server.rstrip("/").removesuffix("/v1") + "/v1"
    return OpenAI(base_url=base_url, api_key=api_key, timeout=300)


def _open_input(file: Path) -> IO[bytes]:
    """FILE opened before anything starts, so that a wrong path fails at once."""
    try:
        return file.open("rb")
    except OSError as exc:
        _fail(f"{file}: cannot read it: {exc.strerror}")


def _metadata_pairs(values: list[str]) -> dict[str, str]:
    pairs = {}
    for value in values:
        key, equals, text = value.partition("=")
        if not equals or not key:
            raise typer.BadParameter(f"{value!r} is not KEY=VALUE", param_hint="--metadata")
        pairs[key] = text
    return pairs


# --- following a batch ---------------------------------------------------------------------


def _follow(client: OpenAI, batch: Batch) -> Batch:
    """Poll the batch until it ends, with a progress bar of its lines on stderr."""
    columns = (  # no description: the batch's id is the line above
        BarColumn(bar_width=30),
        MofNCompleteColumn(),
        TextColumn("{task.fields[detail]}"),
        TimeElapsedColumn(),
    )
    # Drawn on a terminal only: elsewhere Rich would leave a blank line on stderr.
    with Progress(*columns, console=err, transient=True, disable=not err.is_terminal) as progress:
        task = progress.add_task("", total=None, detail=batch.status)
        interval = FIRST_POLL_S
        while batch.status not in FINAL:
            time.sleep(interval)
            interval = min(interval * 1.5, MAX_POLL_S)
            batch = client.batches.retrieve(batch.id)
            counts = batch.request_counts
            progress.update(
                task,
                total=counts.total if counts and counts.total else None,
                completed=counts.completed + counts.failed if counts else 0,
                detail=_progress_detail(batch, _cost_so_far(client, batch)),
            )
    return batch


def _progress_detail(batch: Batch, cost: float | None) -> str:
    parts = [str(batch.status)]
    if batch.request_counts and batch.request_counts.failed:
        parts.append(f"{batch.request_counts.failed} failed")
    parts.append(f"{batch.usage.total_tokens if batch.usage else 0} tokens")
    if cost is not None:
        parts.append(f"${cost:.6f}")
    return ", ".join(parts)


def _cost_so_far(client: OpenAI, batch: Batch) -> float | None:
    """USD the batch's lines have cost so far, from GET /v1/usage; None if it does not say.

    /v1/usage filters by time only, so its records since the batch began are grouped by the
    `batch_id` metadata every line's record carries, and the batch's group is read."""
    import openai

    try:
        page: Any = client.get(
            "/usage",
            cast_to=object,
            options={"params": {"group_by": "metadata.batch_id", "since": batch.created_at}},
        )
        rows = page["data"]
        return next(
            (float(row["cost_usd"]) for row in rows if row.get("metadata.batch_id") == batch.id),
            0.0,  # no line has ended yet
        )
    except (openai.APIError, KeyError, TypeError, ValueError):
        return None  # a server without /v1/usage, or with another shape: tokens only


# --- what is printed -----------------------------------------------------------------------


def _print_description(batch: Batch, cost: float | None) -> None:
    """The batch as "label  value" lines: plain text, never wrapped, nothing trailing."""
    rows = [
        ("id", batch.id),
        ("status", str(batch.status)),
        ("endpoint", batch.endpoint),
        ("model", batch.model or "-"),
        ("input file", batch.input_file_id),
        ("requests", _counts(batch)),
        ("tokens", _tokens(batch)),
        ("cost (USD)", "-" if cost is None else f"{cost:.6f}"),
        ("created", when(batch.created_at)),
        ("output file", batch.output_file_id or "-"),
        ("error file", batch.error_file_id or "-"),
    ]
    if batch.metadata:
        rows.append(("metadata", ", ".join(f"{k}={v}" for k, v in batch.metadata.items())))
    errors = (batch.errors.data or []) if batch.errors else []
    for error in errors[:ERRORS_SHOWN]:
        where = f"line {error.line}: " if error.line is not None else ""
        rows.append(("error", f"{where}{error.message} ({error.code})"))
    if len(errors) > ERRORS_SHOWN:
        rows.append(("error", f"… and {len(errors) - ERRORS_SHOWN} more"))
    for label, value in rows:
        print(f"{label:<11}  {value}")
    sys.stdout.flush()


def _counts(batch: Batch) -> str:
    counts = batch.request_counts
    if counts is None:
        return "-"
    return f"{counts.completed} completed, {counts.failed} failed, of {counts.total}"


def _tokens(batch: Batch) -> str:
    usage = batch.usage
    if usage is None:
        return "0"
    return f"{usage.total_tokens} ({usage.input_tokens} in, {usage.output_tokens} out)"


def _list_table(batches: list[Batch]) -> Table:
    table = Table("id", "status", "endpoint", "completed", "failed", "total", "created")
    for column in table.columns[3:6]:
        column.justify = "right"
    for batch in batches:
        counts = batch.request_counts
        numbers = (counts.completed, counts.failed, counts.total) if counts else (0, 0, 0)
        table.add_row(
            batch.id,
            str(batch.status),
            batch.endpoint,
            *(str(number) for number in numbers),
            when(batch.created_at),
        )
    return table


def _print_json(document: object) -> None:
    print(json.dumps(document, ensure_ascii=False, indent=2), flush=True)
