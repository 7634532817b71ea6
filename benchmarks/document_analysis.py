"""Document analysis end to end: a long document in, a report out; time, jobs, tokens and cost.

    .venv/bin/python benchmarks/document_analysis.py                     # 50,000 words, both parts
    .venv/bin/python benchmarks/document_analysis.py --local-words 10000 # a shorter local run
    .venv/bin/python benchmarks/document_analysis.py --skip-local --json out.json

The document is generated, deterministic (seeded) and never downloaded: `--words` words
(default 50,000) in numbered sections of paragraphs, each sentence drawn from a small business
vocabulary with figures in it. The local part uses its first `--local-words` words (the same
generator, cut at that many words).

Each part starts its own `aiservice serve` on a free port with a temporary AISERVICE_HOME (its
SQLite file; DATABASE_URL and OPENAI_API_KEY are dropped), the service's default worker (2 jobs
at once, a driver look every 0.5 s), POSTs the document as JSON text to
/api/ai/documents/analyses with the master key, and GETs it until it ends. Wall time is POST
sent -> the GET that says it ended.

1. Local model: no configuration file, so `gpt-4o-mini` is the bundled SmolLM2-135M (context
   8,192 tokens, pieces of 3,000 estimated tokens). Reported: wall time, jobs per stage (map,
   reduce-N, report: `usage.stages`), pieces, input/output tokens (the local engine's own
   counts), tokens/s (input + output over the wall time, and output alone), the status and
   whether the report validates against the report schema (`Report` of
   services/analysis_schemas.py). It is slow on 2 cores: while it runs, one line per progress
   change goes to stderr with an estimate of the time left (time so far per job ended x jobs
   still to end; `total` grows while reduce rounds are found, so it is a lower bound).
2. Fake upstream with prices: the project's `FakeUpstream` (in this process, on a thread) as
   two `[[models]]` of `provider = "openai"`, `gpt-4o-mini` at $0.15 / $0.60 and `gpt-4o` at
   $2.50 / $10.00 per 1M input / output tokens (OpenAI's list prices), `context_window =
   128000`, so pieces are the default 3,000 tokens. Its reply is valid JSON of each stage's
   schema made from the text it is given (up to 8 of the piece's sentences as key points; a
   report of up to 10 points, 3 recommendations and 5 sections), about as long as a real
   model's answer. The fake counts tokens in words (docs/testing.md), where a real tokenizer
   counts about 1.3 tokens an English word: the upstream costs are word-based estimates of what
   a vendor would charge, low by about that factor. The cost figure itself is exactly the sum
   of the analysis's ledger rows: the script prints the analysis's `cost` next to
   `GET /v1/usage?group_by=metadata.analysis_id` for its id. Per model: cost, tokens, jobs,
   and the cost per 100 pages, a page being 500 words (cost / words x 50,000); then the ratio
   gpt-4o / gpt-4o-mini.

The footer gives the machine, its CPUs, the load average before and after, and the date.
`--json FILE` writes every figure. Every process the script starts is stopped on exit,
Ctrl-C and SIGTERM included. Not part of pytest.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table

from aiservice.services.analysis_prompts import END_FENCE, FENCE
from aiservice.services.analysis_schemas import AnswerRejected, Report, parse

MASTER_KEY = "sk-bench-master-key"
PATH = "/api/ai/documents/analyses"
ENDS = {"completed", "failed", "cancelled"}
WORDS_PER_PAGE = 500
SEED = 2
# OpenAI's list prices, USD per 1M input / output tokens.
PRICES = {"gpt-4o-mini": (0.15, 0.60), "gpt-4o": (2.50, 10.00)}
SERVER_COMMAND = [sys.executable, "-m", "aiservice"]
console = Console(width=None if sys.stdout.isatty() else 180)
errors = Console(stderr=True, soft_wrap=True)

# --- the document -------------------------------------------------------------------------

TOPICS = ["Sales", "Supply costs", "Hiring", "Customer support", "Logistics", "Pricing",
          "Product quality", "Energy use", "Partnerships", "Risks"]  # fmt: skip
SUBJECTS = ["The northern region", "Our largest customer", "The support team", "Revenue",
            "The new warehouse", "Average delivery time", "The pricing committee",
            "Gross margin", "The pilot project", "Staff turnover", "The board"]  # fmt: skip
VERBS = ["rose", "fell", "grew", "improved", "slipped", "recovered", "dropped",
         "beat the plan", "missed the target"]  # fmt: skip
CAUSES = ["after the spring campaign", "because of higher fuel prices", "despite fewer staff",
          "thanks to the new contract", "while demand was weak", "as the backlog cleared",
          "once the audit ended", "during the holiday season"]  # fmt: skip
FOLLOW_UPS = ["The team proposes to", "Management decided to", "We recommend that we",
              "The committee agreed to", "Next quarter we plan to"]  # fmt: skip
ACTIONS = ["hire two engineers", "renegotiate the freight contract", "raise prices slightly",
           "close the old depot", "train the support staff", "expand to two new cities",
           "cut overtime", "review every supplier"]  # fmt: skip


def sentence(rng: random.Random) -> str:
    kind = rng.random()
    if kind < 0.45:
        figure = f"{rng.randint(1, 40)} %"
        return f"{rng.choice(SUBJECTS)} {rng.choice(VERBS)} by {figure} {rng.choice(CAUSES)}."
    if kind < 0.75:
        return f"{rng.choice(FOLLOW_UPS)} {rng.choice(ACTIONS)} before the end of the year."
    amount = rng.randint(10, 990) * 1000
    return f"{rng.choice(SUBJECTS)} cost {amount:,} euros, {rng.choice(CAUSES)}."


def make_document(words: int, seed: int = SEED) -> str:
    """Exactly `words` words: numbered sections of paragraphs of 3 to 8 sentences."""
    rng = random.Random(seed)
    paragraphs: list[str] = []
    count = section = 0
    while count < words:
        heading = f"Section {section + 1}. {TOPICS[section % len(TOPICS)]}"
        fits = count + len(heading.split()) < words
        if fits and (not paragraphs or rng.random() < 0.12):
            section += 1
            paragraphs.append(heading)
            count += len(heading.split())
            continue
        sentences: list[str] = []
        for _ in range(rng.randint(3, 8)):
            text = sentence(rng).split()
            if count + len(text) >= words:
                text = text[: words - count]
                text[-1] = text[-1].rstrip(".,") + "."
            sentences.append(" ".join(text))
            count += len(text)
            if count >= words:
                break
        paragraphs.append(" ".join(sentences))
    return "\n\n".join(paragraphs)


# --- the fake upstream's answers ----------------------------------------------------------


def fenced_text(body: dict[str, Any]) -> str:
    """The text between the fences, from a chat completion or a Responses request."""
    if "messages" in body:
        contents = [m.get("content") for m in body["messages"] if m.get("role") == "user"]
        text = contents[-1] if contents else ""
        if isinstance(text, list):
            text = " ".join(part.get("text", "") for part in text if isinstance(part, dict))
    else:
        text = body.get("input") if isinstance(body.get("input"), str) else json.dumps(body)
    start, end = text.find(FENCE), text.rfind(END_FENCE)
    return text[start + len(FENCE) : end].strip() if start >= 0 and end > start else text


def spread(items: list[str], count: int) -> list[str]:
    """Up to `count` items taken evenly from `items`, each at most 200 characters."""
    if len(items) > count:
        step = len(items) / count
        items = [items[int(i * step)] for i in range(count)]
    return [item[:200] for item in items]


def stage_reply(body: dict[str, Any]) -> str:
    """Valid JSON for the stage's schema (report or key points), made from its text."""
    chat_format = (body.get("response_format") or {}).get("json_schema") or {}
    schema = chat_format.get("schema") or ((body.get("text") or {}).get("format") or {}).get(
        "schema"
    )
    text = fenced_text(body)
    bullets = [line[2:].strip() for line in text.splitlines() if line.startswith("- ")]
    points = bullets or [s for s in re.split(r"(?<=\.)\s+", text) if len(s.split()) > 3]
    points = points or ["The document holds no full sentence."]
    if "title" not in ((schema or {}).get("properties") or {}):
        return json.dumps({"key_points": spread(points, 8)})
    chosen = spread(points, 10)
    return json.dumps(
        {
            "title": "Report on the document",
            "summary": " ".join(chosen[:3])[:1200],
            "key_points": chosen,
            "recommendations": [f"Follow up: {p}"[:200] for p in chosen[:3]],
            "sections": [
                {"heading": f"Part {i + 1}", "summary": p[:400]} for i, p in enumerate(chosen[:5])
            ],
        }
    )


# --- servers --------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """`aiservice serve` on a throwaway home, its output in a log file there."""

    def __init__(self, home: Path):
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.upper().startswith("AISERVICE_")
            and k.upper() not in {"DATABASE_URL", "OPENAI_API_KEY", "OPENAI_BASE_URL"}
        }
        env |= {"AISERVICE_HOME": str(home), "AISERVICE_MASTER_KEY": MASTER_KEY}
        self.log_path = home / "server.log"
        self.base_url = f"http://127.0.0.1:{free_port()}"
        port = self.base_url.rsplit(":", 1)[1]
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [*SERVER_COMMAND, "serve", "--port", port],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def wait_ready(self, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited early:\n{self.log_path.read_text()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.base_url}/ready", timeout=1).status_code == 200:
                    return
            time.sleep(0.1)
        raise RuntimeError(f"server not ready in {timeout}s:\n{self.log_path.read_text()}")

    def stop(self) -> None:
        if self.process.poll() is None:
            errors.print("stopping the server (it may first end its running job)")
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@contextlib.contextmanager
def running_server(config: str | None, keep_home: bool = False):
    home = Path(tempfile.mkdtemp(prefix="aiservice-bench-doc-"))
    if config is not None:
        (home / "config.toml").write_text(config, encoding="utf-8")
    server = None
    try:
        server = Server(home)
        server.wait_ready()
        yield server
    finally:
        if server is not None:
            server.stop()
        if not keep_home:
            shutil.rmtree(home, ignore_errors=True)


def fake_config(base_url: str) -> str:
    entries = [
        f'[[models]]\nname = "{name}"\nprovider = "openai"\nbase_url = "{base_url}"\n'
        f'upstream_model = "{name}"\nprice_input_per_1m = {price_in}\n'
        f"price_output_per_1m = {price_out}\ncontext_window = 128000\nmax_retries = 0\n"
        for name, (price_in, price_out) in PRICES.items()
    ]
    return "\n".join(entries)


# --- one analysis -----------------------------------------------------------------------------


@dataclass
class Run:
    part: str
    model: str
    words: int
    status: str = "?"
    wall_s: float = 0.0
    chunks: int = 0
    stages: dict[str, dict[str, Any]] = field(default_factory=dict)
    input_tokens: int = 0
    output_tokens: int = 0
    cost: float = 0.0
    ledger_cost: float | None = None
    report_valid: bool = False
    error: str | None = None
    analysis_id: str = ""
    report: dict[str, Any] | None = None

    def jobs(self, stage: str) -> int:
        return int((self.stages.get(stage) or {}).get("requests", 0))

    @property
    def pages(self) -> float:
        return self.words / WORDS_PER_PAGE

    @property
    def cost_per_100_pages(self) -> float:
        return self.cost / self.pages * 100


class Progress:
    """One stderr line per change of the analysis's progress, with the time left."""

    def __init__(self, label: str, started: float):
        self.label, self.started, self.last = label, started, None

    def show(self, body: dict[str, Any]) -> None:
        progress = body.get("progress") or {}
        seen = (body.get("status"), body.get("stage"), progress.get("done"), progress.get("total"))
        if seen == self.last:
            return
        self.last = seen
        done, total = progress.get("done") or 0, progress.get("total") or 0
        elapsed = time.perf_counter() - self.started
        left = f"~{elapsed / done * (total - done):.0f} s left" if done else "time left: ?"
        errors.print(
            f"  {self.label}: {body.get('status')} stage {body.get('stage')}, {done}/{total} "
            f"jobs ended, {progress.get('tokens', 0)} tokens, {elapsed:.0f} s so far, {left}",
            highlight=False,
        )


def analyse(
    server: Server, run: Run, text: str, poll_s: float, progress: bool, timeout: float = 21600
) -> Run:
    headers = {"Authorization": f"Bearer {MASTER_KEY}"}
    with httpx.Client(base_url=server.base_url, headers=headers, timeout=60) as http:
        started = time.perf_counter()
        created = http.post(PATH, json={"text": text, "name": "bench.txt", "model": run.model})
        created.raise_for_status()
        body = created.json()
        shower = Progress(f"{run.part} {run.model}", started)
        while body["status"] not in ENDS:
            if time.perf_counter() - started > timeout:
                http.delete(f"{PATH}/{body['id']}")
                raise RuntimeError(f"{body['id']} not ended in {timeout:.0f} s: {body}")
            time.sleep(poll_s)
            body = http.get(f"{PATH}/{body['id']}").json()
            if progress:
                shower.show(body)
        run.wall_s = time.perf_counter() - started
        ledger = http.get("/v1/usage", params={"group_by": "metadata.analysis_id"})
        ledger.raise_for_status()
    fill(run, body, ledger.json()["data"])
    return run


def fill(run: Run, body: dict[str, Any], ledger: list[dict[str, Any]]) -> None:
    usage = body.get("usage") or {}
    run.analysis_id = body["id"]
    run.status, run.error = body["status"], body.get("error")
    run.chunks = (body.get("progress") or {}).get("chunks", 0)
    run.stages = usage.get("stages") or {}
    run.input_tokens = usage.get("input_tokens", 0)
    run.output_tokens = usage.get("output_tokens", 0)
    run.cost = float(body.get("cost") or 0.0)
    rows = [r for r in ledger if r.get("metadata.analysis_id") == body["id"]]
    run.ledger_cost = float(rows[0]["cost_usd"]) if rows else None
    run.report = body.get("report")
    if run.report is not None:
        try:
            parse(Report, json.dumps(body["report"]))
            run.report_valid = True
        except AnswerRejected:
            run.report_valid = False


# --- tables ---------------------------------------------------------------------------------


def stage_cell(run: Run) -> str:
    reduces = sorted(n for n in run.stages if n.startswith("reduce-"))
    names = ["map", *reduces, "report"]
    return " · ".join(f"{name} {run.jobs(name)}" for name in names if run.jobs(name))


def print_local(run: Run) -> None:
    table = Table(title=f"local model: {run.words:,} words, the bundled SmolLM2-135M")
    for column in ("model", "status", "report valid", "wall s", "pieces"):
        table.add_column(column, justify="right" if column in {"wall s", "pieces"} else "left")
    table.add_column("jobs", no_wrap=True)
    for column in ("input tokens", "output tokens", "tokens/s", "output tok/s"):
        table.add_column(column, justify="right")
    wall = run.wall_s or 1.0
    table.add_row(
        run.model,
        run.status,
        "yes" if run.report_valid else "no",
        f"{run.wall_s:,.1f}",
        str(run.chunks),
        stage_cell(run),
        f"{run.input_tokens:,}",
        f"{run.output_tokens:,}",
        f"{(run.input_tokens + run.output_tokens) / wall:,.1f}",
        f"{run.output_tokens / wall:,.2f}",
    )
    console.print(table)
    if run.error:
        console.print(f"error: {run.error}", highlight=False)
    if run.report:
        counts = ", ".join(
            f"{len(run.report.get(name) or [])} {name.replace('_', ' ')}"
            for name in ("key_points", "recommendations", "sections")
        )
        title = str(run.report.get("title"))[:80]
        console.print(f"local report: title {title!r}; {counts}", highlight=False)


def print_upstream(runs: list[Run]) -> None:
    words = runs[0].words
    table = Table(
        title=f"fake upstream, OpenAI list prices: {words:,} words = {words / WORDS_PER_PAGE:g} "
        f"pages of {WORDS_PER_PAGE} words (tokens counted in words)"
    )
    for column in ("model", "$ in/out per 1M", "status", "report valid", "wall s", "pieces"):
        table.add_column(column, justify="right" if column in {"wall s", "pieces"} else "left")
    table.add_column("jobs", no_wrap=True)
    for column in ("input tokens", "output tokens", "cost $", "ledger $", "$ / 100 pages"):
        table.add_column(column, justify="right")
    for run in runs:
        price_in, price_out = PRICES[run.model]
        ledger = "—" if run.ledger_cost is None else f"{run.ledger_cost:.6f}"
        table.add_row(
            run.model,
            f"{price_in:.2f} / {price_out:.2f}",
            run.status,
            "yes" if run.report_valid else "no",
            f"{run.wall_s:,.1f}",
            str(run.chunks),
            stage_cell(run),
            f"{run.input_tokens:,}",
            f"{run.output_tokens:,}",
            f"{run.cost:.6f}",
            ledger,
            f"{run.cost_per_100_pages:.4f}",
        )
    console.print(table)
    by_model = {run.model: run for run in runs}
    cheap, dear = by_model.get("gpt-4o-mini"), by_model.get("gpt-4o")
    if cheap and dear and cheap.cost:
        console.print(
            f"gpt-4o / gpt-4o-mini cost ratio: x{dear.cost / cheap.cost:.2f} "
            f"(${dear.cost_per_100_pages:.4f} against ${cheap.cost_per_100_pages:.4f} "
            "per 100 pages)",
            highlight=False,
        )
    for run in runs:
        if run.error:
            console.print(f"{run.model} error: {run.error}", highlight=False)


# --- main -------------------------------------------------------------------------------------


def run_local(words: int, args: argparse.Namespace) -> Run:
    text = make_document(words)
    with running_server(None, args.keep_home) as server:
        errors.print(f"local: server ready on {server.base_url}; {words:,} words", highlight=False)
        return analyse(server, Run("local", "gpt-4o-mini", words), text, 1.0, progress=True)


def run_upstream(words: int, args: argparse.Namespace) -> list[Run]:
    from aiservice.testing import FakeUpstream

    text = make_document(words)
    runs: list[Run] = []
    with contextlib.ExitStack() as stack:
        fake = stack.enter_context(FakeUpstream(reply=stage_reply, record_requests=False))
        server = stack.enter_context(running_server(fake_config(fake.base_url), args.keep_home))
        errors.print(f"upstream: server ready on {server.base_url}", highlight=False)
        for model in PRICES:
            runs.append(analyse(server, Run("upstream", model, words), text, 0.1, progress=False))
    return runs


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--words", type=int, default=50_000, help="document length (words)")
    parser.add_argument(
        "--local-words", type=int, help="the local model's document length (default: --words)"
    )
    parser.add_argument("--skip-local", action="store_true", help="only the fake-upstream part")
    parser.add_argument("--json", type=Path, help="also write every figure to this file")
    parser.add_argument("--keep-home", action="store_true", help="keep the temporary homes")
    args = parser.parse_args()
    if args.words < 1 or (args.local_words is not None and args.local_words < 1):
        parser.error("--words and --local-words must be at least 1")
    return args


def terminate(signum: int, _frame: Any) -> None:
    raise SystemExit(128 + signum)  # unwinds through the finally blocks that stop the servers


def main() -> int:
    args = parse_args()
    signal.signal(signal.SIGTERM, terminate)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started with it ignored
    load_start, started_at = os.getloadavg(), datetime.datetime.now().astimezone()
    runs: list[Run] = []
    if not args.skip_local:
        runs.append(run_local(args.local_words or args.words, args))
    runs.extend(run_upstream(args.words, args))
    load_end = os.getloadavg()
    if not args.skip_local:
        print_local(runs[0])
    print_upstream([run for run in runs if run.part == "upstream"])
    console.print(
        f"{platform.node()} ({platform.machine()}, {platform.system()} {platform.release()}), "
        f"{os.cpu_count()} CPUs, python {platform.python_version()}; 1-min load average "
        f"{load_start[0]:.2f} before, {load_end[0]:.2f} after; "
        f"{started_at.isoformat(timespec='seconds')}; worker defaults (2 jobs at once, "
        "poll 0.5 s); local progress polled every 1 s, upstream every 0.1 s",
        highlight=False,
    )
    if args.json:
        machine = {"node": platform.node(), "cpus": os.cpu_count()}
        data = {"date": started_at.isoformat(timespec="seconds"), "machine": machine}
        data |= {"load_average": {"before": load_start, "after": load_end}}
        data["runs"] = [
            asdict(run) | {"cost_per_100_pages": run.cost_per_100_pages} for run in runs
        ]
        args.json.write_text(json.dumps(data, indent=2), encoding="utf-8")
    return 0 if all(run.status == "completed" and run.report_valid for run in runs) else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:  # the servers were stopped on the way out
        errors.print("interrupted")
        sys.exit(130)
