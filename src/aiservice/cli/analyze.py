"""`aiservice analyze FILE`: a document analysis (POST /api/ai/documents/analyses) from the
command line, followed to its report with a progress bar of its jobs.

FILE (or stdin, `-`) is read here by aiservice.documents and sent as text. The command talks
to a running server with --server, otherwise to aiservice started in this process on
$AISERVICE_HOME with a worker (the EmbeddedServer of `aiservice chat` and `aiservice batch`).
The bar is drawn on stderr, from what `GET …/{id}` says every half second; Ctrl-C detaches
(the analysis goes on wherever a worker runs on its home) and `--resume ID` re-attaches.
`--compare m1,m2` analyses the document on each model, one after the other, so that each
model's wall time is its own and not shared with the others' jobs.

Exit status: 0 completed, 1 failed or cancelled (`--cancel`: it had already ended), 2 an error
(an unreadable document, a refused request, an unknown id, no server), 130 detached by Ctrl-C.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn
from urllib.parse import quote

import rich.progress as bars
import typer
from rich.console import Console
from rich.padding import Padding
from rich.table import Table
from rich.text import Text

from aiservice.cli.common import err, out, settings_or_exit

if TYPE_CHECKING:
    import httpx

    from aiservice.documents import Document

EXIT_ERROR = 2
EXIT_DETACHED = 130  # the shell's code for Ctrl-C: the analysis's outcome is not known yet
POLL_S = 0.5
PATH = "/api/ai/documents/analyses"
DEFAULT_MODEL = "gpt-4o-mini"  # the route's own default
ENDED = ("completed", "failed", "cancelled")
SUMMARY_FIELDS = ("id", "model", "status", "report", "usage", "cost")

Analysis = dict[str, Any]


class AnalyzeError(Exception):
    """Ends the command with this one-line message on stderr and exit status 2."""


@dataclass(frozen=True)
class Outcome:
    analysis: Analysis
    wall_s: float | None  # from this command's request to the end; None when re-attached


# --- the command ---------------------------------------------------------------------------


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


def analyze_command(
    file: Annotated[
        str | None,
        typer.Argument(
            metavar="FILE", help="The document (.txt, .md, .pdf, .docx, .eml), or - for stdin."
        ),
    ] = None,
    model: Annotated[str | None, typer.Option(help=f"The model (default {DEFAULT_MODEL}).")] = None,
    chunk_tokens: Annotated[
        int | None,
        typer.Option(min=256, max=100_000, help="Largest piece of the document, in tokens."),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one JSON object (a list with --compare).")
    ] = False,
    markdown: Annotated[
        Path | None, typer.Option(metavar="OUT.md", help="Also write the report as Markdown.")
    ] = None,
    compare: Annotated[
        str | None,
        typer.Option(metavar="M1,M2", help="Analyse on each model in turn and compare them."),
    ] = None,
    resume: Annotated[
        str | None, typer.Option(metavar="ID", help="Re-attach to a running analysis.")
    ] = None,
    cancel: Annotated[str | None, typer.Option(metavar="ID", help="Cancel an analysis.")] = None,
    server: Server = None,
    api_key: ApiKey = None,
    config: Config = None,
) -> None:
    """Analyse a document into a report (title, summary, key points, recommendations,
    sections) and its cost, with a progress bar; Ctrl-C detaches, --resume re-attaches."""
    new_only = {"--model": model, "--compare": compare, "--chunk-tokens": chunk_tokens}
    _check_options(
        file, resume, cancel, {**new_only, "--markdown": markdown} if cancel else new_only
    )
    models = _models(model, compare)
    if markdown is not None and not markdown.parent.is_dir():
        _fail(f"{markdown}: no such directory ({markdown.parent})")
    work: Callable[[AnalysesApi], int]
    if cancel is not None:
        work = partial(_cancel, analysis_id=cancel, as_json=as_json)
    elif resume is not None:
        work = partial(_resume, analysis_id=resume, as_json=as_json, markdown=markdown)
    else:
        document = _read(file or "-")  # before anything starts: a bad file fails at once
        work = partial(
            _analyze,
            document=document,
            models=models,
            chunk_tokens=chunk_tokens,
            as_json=as_json,
            markdown=markdown,
            compare=compare is not None,
        )
    _run(server, api_key, config, work)


def _models(model: str | None, compare: str | None) -> list[str]:
    if compare is None:
        return [model or DEFAULT_MODEL]
    names = [name.strip() for name in compare.split(",") if name.strip()]
    if len(names) < 2:
        _fail("--compare takes two models or more, e.g. --compare gpt-4o-mini,gpt-4o")
    if model is not None:
        _fail("--compare names the models: leave out --model")
    return names


def _check_options(
    file: str | None, resume: str | None, cancel: str | None, new_only: dict[str, object]
) -> None:
    """One of FILE, --resume and --cancel; the options of a new analysis with FILE only."""
    ways = (("FILE", file), ("--resume", resume), ("--cancel", cancel))
    chosen = [name for name, value in ways if value]
    if len(chosen) != 1:
        _fail("Give one of FILE (or - for stdin), --resume ID or --cancel ID.")
    if file is None:
        for name, value in new_only.items():
            if value is not None:
                _fail(f"{name} is for a new analysis of FILE, not for {chosen[0]}.")


def _read(file: str) -> Document:
    from aiservice.documents import DocumentError, document_from_text, read_document

    try:
        if file == "-":
            return document_from_text(sys.stdin.read(), "stdin")
        return read_document(Path(file))
    except DocumentError as exc:
        _fail(str(exc))
    except UnicodeDecodeError:
        _fail("stdin: not text in the terminal's encoding")


# --- reaching the server, and failing in one line ------------------------------------------


class AnalysesApi:
    """The analyses routes of one server, with its key as Bearer; every failure is an
    AnalyzeError of one line."""

    def __init__(self, base_url: str, api_key: str):
        import httpx

        self.base_url = base_url.rstrip("/").removesuffix("/v1")
        self._http = httpx.Client(
            base_url=self.base_url, headers={"Authorization": f"Bearer {api_key}"}, timeout=300
        )

    def create(self, body: dict[str, Any]) -> Analysis:
        return self._call("POST", PATH, json=body)

    def get(self, analysis_id: str) -> Analysis:
        return self._call("GET", f"{PATH}/{quote(analysis_id, safe='')}")

    def cancel(self, analysis_id: str) -> Analysis:
        return self._call("DELETE", f"{PATH}/{quote(analysis_id, safe='')}")

    def close(self) -> None:
        self._http.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> Analysis:
        import httpx

        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TimeoutException:
            raise AnalyzeError("the server did not answer in time") from None
        except httpx.HTTPError as exc:
            raise AnalyzeError(f"could not reach the server at {self.base_url} ({exc})") from None
        try:
            body = response.json()
        except ValueError:
            body = None
        if response.is_success and isinstance(body, dict):
            return body
        raise AnalyzeError(_error_message(response, body))


def _error_message(response: httpx.Response, body: Any) -> str:
    """The server's message: the /api/ai shape {"success": false, "error": "…"}, or OpenAI's
    envelope (a proxy in between may answer either)."""
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        error = error.get("message")
    if isinstance(error, str) and error:
        return error
    return f"the server answered {response.status_code} {response.reason_phrase}"


def _run(
    server: str | None,
    api_key: str | None,
    config: Path | None,
    work: Callable[[AnalysesApi], int],
) -> NoReturn:
    """Run `work` with the server's API; its result is the exit status. Every error ends as
    one line on stderr and exit status 2, never a traceback."""
    try:
        with _api(server, api_key, config) as api:
            status = work(api)
    except AnalyzeError as exc:
        _fail(str(exc))
    except OSError as exc:  # the --markdown file
        _fail(f"{exc.filename}: {exc.strerror}" if exc.filename else str(exc))
    except KeyboardInterrupt:  # e.g. while the in-process server starts
        err.print()
        status = EXIT_DETACHED
    raise typer.Exit(status)


def _fail(message: str) -> NoReturn:
    _say(message, style="red")
    raise typer.Exit(EXIT_ERROR)


def _say(message: str, style: str | None = None) -> None:
    """One line on stderr, as it is: never wrapped, never read as markup."""
    err.print(message, style=style, highlight=False, soft_wrap=True, markup=False)


@contextmanager
def _api(server: str | None, api_key: str | None, config: Path | None) -> Iterator[AnalysesApi]:
    if server is not None:
        if config is not None:
            raise AnalyzeError("--config is for the in-process service; a --server has its own.")
        key = api_key or os.environ.get("AISERVICE_API_KEY") or os.environ.get("OPENAI_API_KEY")
        if not key:
            raise AnalyzeError(
                "--server needs an API key: --api-key, AISERVICE_API_KEY or OPENAI_API_KEY"
            )
        with closing(AnalysesApi(server, key)) as api:
            yield api
        return
    if api_key is not None:
        raise AnalyzeError("--api-key is for --server; without it aiservice runs in this process")
    settings = settings_or_exit(config)
    from aiservice.chat.embedded_server import EmbeddedServer, EmbeddedServerError

    _say("(starting aiservice in this process…)")
    try:
        with (
            EmbeddedServer(settings, worker=True) as embedded,
            closing(AnalysesApi(embedded.base_url, embedded.api_key)) as api,
        ):
            yield api
    except EmbeddedServerError as exc:
        raise AnalyzeError(str(exc)) from None


# --- analysing, following, cancelling ------------------------------------------------------


def _analyze(
    api: AnalysesApi,
    *,
    document: Document,
    models: list[str],
    chunk_tokens: int | None,
    as_json: bool,
    markdown: Path | None,
    compare: bool,
) -> int:
    """The document analysed on each model in turn, each followed to its end, then shown."""
    outcomes = []
    for index, model in enumerate(models):
        started = time.monotonic()
        body = {"text": document.text, "name": document.name, "model": model}
        if chunk_tokens is not None:
            body["chunk_tokens"] = chunk_tokens
        created = api.create(body)
        _announce(created, "")
        label = model if compare else ""
        analysis = _follow(api, created, label=label, not_started=models[index + 1 :])
        outcomes.append(Outcome(analysis, time.monotonic() - started))
    return _output(outcomes, as_json=as_json, markdown=markdown, compare=compare)


def _resume(api: AnalysesApi, *, analysis_id: str, as_json: bool, markdown: Path | None) -> int:
    analysis = api.get(analysis_id)
    _announce(analysis, "re-attached" if analysis.get("status") not in ENDED else "")
    analysis = _follow(api, analysis, label="", not_started=[])
    return _output([Outcome(analysis, None)], as_json=as_json, markdown=markdown, compare=False)


def _cancel(api: AnalysesApi, *, analysis_id: str, as_json: bool) -> int:
    analysis = api.cancel(analysis_id)
    status = analysis.get("status")
    if as_json:
        _print_json(_summary(analysis))
    else:
        print(f"{analysis['id']}: {status}", flush=True)
    if status != "cancelled":
        _say(f"It had already ended ({status}): nothing was cancelled.")
        return 1
    return 0


def _announce(analysis: Analysis, note: str) -> None:
    chunks = (analysis.get("progress") or {}).get("chunks")
    parts = [analysis.get("model"), f"{chunks} chunks", analysis.get("status"), note]
    described = ", ".join(str(part) for part in parts if part)
    _say(f"{analysis['id']}: {described}")


def _progress_bar() -> bars.Progress:
    columns = (
        bars.TextColumn("{task.description}"),
        bars.BarColumn(bar_width=30),
        bars.MofNCompleteColumn(),
        bars.TextColumn("{task.fields[chunks]} chunks"),
        bars.TextColumn("{task.fields[tokens]} tokens"),
        bars.TextColumn("${task.fields[cost]:.6f}"),
        bars.TimeElapsedColumn(),
        bars.TextColumn("ETA"),
        bars.TimeRemainingColumn(),
    )
    # Wall-clock time, so that the elapsed time starts at the analysis's created_at (a
    # re-attached bar goes on from there). Drawn on a terminal only, as `aiservice batch`.
    return bars.Progress(
        *columns,
        console=err,
        transient=True,
        disable=not err.is_terminal,
        get_time=time.time,
    )


def _follow(
    api: AnalysesApi, analysis: Analysis, *, label: str, not_started: list[str]
) -> Analysis:
    """Poll the analysis until it ends, its jobs' progress on the bar; Ctrl-C detaches."""
    progress = _progress_bar()
    task = progress.add_task(**_state(analysis, label))  # before the first frame is drawn
    started = analysis.get("created_at")
    if isinstance(started, int | float):
        progress.tasks[-1].start_time = min(float(started), time.time())
    with progress:
        try:
            while True:
                progress.update(task, **_state(analysis, label))
                if analysis.get("status") in ENDED:
                    return analysis
                time.sleep(POLL_S)
                analysis = api.get(analysis["id"])
        except KeyboardInterrupt:
            pass
    detached = analysis["id"]
    _say(f"Detached; the analysis goes on: {detached} (aiservice analyze --resume {detached})")
    if not_started:
        _say(f"Not started: {', '.join(not_started)}")
    raise typer.Exit(EXIT_DETACHED)


def _state(analysis: Analysis, label: str) -> dict[str, Any]:
    """What the bar shows of the analysis, as Progress.update's arguments."""
    shown = analysis.get("progress") or {}
    status = analysis.get("status")
    where = analysis.get("stage") if status == "in_progress" else status
    return {
        "description": " ".join(str(part) for part in (label, where) if part),
        "total": shown.get("total") or None,
        "completed": shown.get("done") or 0,
        "chunks": shown.get("chunks") or 0,
        "tokens": shown.get("tokens") or 0,
        "cost": float(shown.get("cost") or 0.0),
    }


# --- what is printed -----------------------------------------------------------------------


def _output(outcomes: list[Outcome], *, as_json: bool, markdown: Path | None, compare: bool) -> int:
    """The results on stdout (and --markdown); 0 when every analysis completed, else 1."""
    analyses = [outcome.analysis for outcome in outcomes]
    if markdown is not None:
        _write_markdown(markdown, analyses)
    if as_json:
        summaries = [_summary(analysis) for analysis in analyses]
        _print_json(summaries if compare else summaries[0])
    else:
        for analysis in analyses:
            if compare:
                out.rule(Text(str(analysis.get("model")), style="bold"))
            _print_report(analysis)
    if compare:  # with --json on stderr: stdout holds the JSON alone
        _print_table(_comparison(outcomes), err if as_json else out)
    unfinished = [analysis for analysis in analyses if analysis.get("status") != "completed"]
    for analysis in unfinished:
        _print_failure(analysis)
    return 1 if unfinished else 0


def _summary(analysis: Analysis) -> dict[str, Any]:
    return {name: analysis.get(name) for name in SUMMARY_FIELDS}


def _print_json(document: object) -> None:
    print(json.dumps(document, ensure_ascii=False, indent=2), flush=True)


def _print_failure(analysis: Analysis) -> None:
    status = analysis.get("status")
    if status == "failed":
        message = f"{analysis['id']} failed: {analysis.get('error') or 'no reason given'}"
    elif status == "cancelled":
        message = f"{analysis['id']} was cancelled"
    else:
        message = f"{analysis['id']} is {status}"
    _say(message, style="red")


def _print_report(analysis: Analysis) -> None:
    """The report as rich text (the model's words never read as markup), then its cost."""
    report = analysis.get("report")
    if report:
        out.print(Text(str(report.get("title") or ""), style="bold underline"))
        out.print()
        out.print(Text(str(report.get("summary") or "")))
        for heading in ("key_points", "recommendations"):
            items = report.get(heading) or []
            if items:
                out.print()
                out.print(Text(heading.replace("_", " ").capitalize(), style="bold"))
                for item in items:
                    out.print(_indented(f"• {item}", 2))
        sections = report.get("sections") or []
        if sections:
            out.print()
            out.print(Text("Sections", style="bold"))
            for section in sections:
                out.print(_indented(section.get("heading"), 2, style="bold"))
                out.print(_indented(section.get("summary"), 4))
        out.print()
    out.print(Text(_totals(analysis)), soft_wrap=True)
    stages = (analysis.get("usage") or {}).get("stages") or {}
    if stages:
        _print_table(_stage_table(stages), out)


def _indented(text: Any, indent: int, style: str = "") -> Padding:
    return Padding(Text(str(text or ""), style=style), (0, 0, 0, indent), expand=False)


def _totals(analysis: Analysis) -> str:
    usage = analysis.get("usage") or {}
    tokens = (
        f"{usage.get('total_tokens', 0):,} tokens ({usage.get('input_tokens', 0):,} in, "
        f"{usage.get('output_tokens', 0):,} out)"
    )
    return f"Total cost: {_usd(analysis.get('cost'))} USD, {tokens}"


def _usd(cost: Any) -> str:
    """Every digit the server gives (it rounds to 10 decimals): the ledger's figure exactly."""
    digits = f"{float(cost or 0.0):.10f}".rstrip("0")
    return "$" + (digits + "0" if digits.endswith(".") else digits)


def _stage_order(stage: str) -> tuple[int, int, str]:
    """map, reduce-1, reduce-2, …, report: the order they ran in."""
    level = stage.removeprefix("reduce-")
    if stage.startswith("reduce-") and level.isdigit():
        return (1, int(level), stage)
    return ({"map": 0, "report": 2}.get(stage, 3), 0, stage)


def _stage_table(stages: dict[str, dict[str, Any]]) -> Table:
    table = Table("stage", "requests", "input tokens", "output tokens", "cost (USD)")
    for column in table.columns[1:]:
        column.justify = "right"
    for stage in sorted(stages, key=_stage_order):
        row = stages[stage]
        table.add_row(
            Text(stage),
            str(row.get("requests", 0)),
            f"{row.get('input_tokens', 0):,}",
            f"{row.get('output_tokens', 0):,}",
            _usd(row.get("cost"))[1:],
        )
    return table


def _comparison(outcomes: list[Outcome]) -> Table:
    table = Table(
        "model", "status", "jobs", "input tokens", "output tokens", "cost (USD)", "wall time",
        "cost ratio",
    )  # fmt: skip
    for column in table.columns[2:]:
        column.justify = "right"
    first = float(outcomes[0].analysis.get("cost") or 0.0)
    for outcome in outcomes:
        analysis = outcome.analysis
        usage = analysis.get("usage") or {}
        cost = float(analysis.get("cost") or 0.0)
        table.add_row(
            Text(str(analysis.get("model"))),
            Text(str(analysis.get("status"))),
            str((analysis.get("progress") or {}).get("done", 0)),
            f"{usage.get('input_tokens', 0):,}",
            f"{usage.get('output_tokens', 0):,}",
            _usd(cost)[1:],
            "-" if outcome.wall_s is None else f"{outcome.wall_s:.1f} s",
            f"{cost / first:.2f}x" if first else "-",
        )
    return table


def _print_table(table: Table, console: Console) -> None:
    """At its natural width, as cli/common.print_table does: numbers are never cut."""
    from rich.measure import Measurement

    natural = Measurement.get(console, console.options.update(width=100_000), table).maximum
    Console(stderr=console.stderr, width=max(console.width, natural)).print(table)


def _write_markdown(path: Path, analyses: list[Analysis]) -> None:
    parts = [_markdown(analysis) for analysis in analyses if analysis.get("report")]
    if not parts:
        _say(f"{path}: not written, there is no report")
        return
    path.write_text("\n\n".join(parts), encoding="utf-8")
    _say(f"Wrote {path}")


def _markdown(analysis: Analysis) -> str:
    report = analysis["report"]
    lines = [f"# {_one_line(report.get('title'))}", "", str(report.get("summary") or ""), ""]
    for key, heading in (("key_points", "Key points"), ("recommendations", "Recommendations")):
        items = report.get(key) or []
        if items:
            lines += [f"## {heading}", "", *(f"- {_one_line(item)}" for item in items), ""]
    sections = report.get("sections") or []
    if sections:
        lines += ["## Sections", ""]
        for section in sections:
            lines += [f"### {_one_line(section.get('heading'))}", ""]
            lines += [str(section.get("summary") or ""), ""]
    lines.append(f"*{analysis.get('model')}: {_totals(analysis)}*")
    return "\n".join(lines) + "\n"


def _one_line(text: Any) -> str:
    return " ".join(str(text or "").split())
