"""The e-mail assistant on a labelled set of e-mails: per model and feature, how often the answer
is valid, how often it is right, how long it takes and what it costs.

    .venv/bin/python benchmarks/email_eval.py                        # gpt-4o-mini, all features
    .venv/bin/python benchmarks/email_eval.py --limit 6 --features classify,extract,triage
    .venv/bin/python benchmarks/email_eval.py --model gpt-4o-mini --model gpt-4o --json out.json
    .venv/bin/python benchmarks/email_eval.py --config upstreams.toml   # embedded, your models
    .venv/bin/python benchmarks/email_eval.py --server http://127.0.0.1:5000 --api-key sk-...

The set is benchmarks/data/email_eval.jsonl: 64 e-mails written for it, half French and half
English (incidents, meeting requests, customer complaints, internal threads, spam, newsletters,
cold outreach). Each line is {"id", "lang", "subject", "body", "labels"}, the labels being
`category` (urgent / important / spam / marketing), `needs_reply`, `is_newsletter`,
`is_cold_outreach` and `meeting` ({"date", "time", "location"}, or null when the e-mail holds no
meeting). The lines are ordered so that any prefix (--limit N) mixes kinds and languages.

Every feature gets every e-mail, through the facade (`AIService`): by default embedded in this
process, on a temporary AISERVICE_HOME (set before the facade is made, so the user's home and
its database are untouched; DATABASE_URL is dropped for the same reason), which reads no
configuration file unless --config names one. There `gpt-4o-mini` is the bundled local model,
unless an upstream answers to that name (--config, or OPENAI_API_KEY in the environment).
--server URL --api-key KEY calls a running server instead, with its own configuration. The
e-mail given to the features is "Subject: <subject>", a blank line and the body; classify_email
gets the subject and the body apart, summarize_email_thread gets the same text as one message.

Per model x feature, one row: calls; valid, the share of calls whose result has `success` True
(every structured answer was checked against its schema, so this is the schema-valid rate;
target 100 %); accuracy, counting a failed call as wrong (classify: category; triage:
needs_reply, is_newsletter, is_cold_outreach; extract: date, time and location, exact after
folding case and runs of whitespace, None against None counting as right; reply: how many
were cut at max_tokens); p50 and p90 of the call's wall-clock time; prompt + completion tokens
per call; cost per 1,000 e-mails (the sum of the results' `cost` / calls x 1,000; the local
model costs 0). Then the failures of each row, grouped by reason (the three commonest), the
warm-up call (not counted: it loads the model), and a footer with the machine, its CPUs, the
load average and the date. The calls are sequential. Exit status 1 if a row is below 100 %
valid, after everything is printed. --json FILE also writes every call (the answer's fields
next to the labels); --keep-home keeps the temporary home.
"""

from __future__ import annotations

import argparse
import collections
import datetime
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from aiservice import AIService

DATA = Path(__file__).parent / "data" / "email_eval.jsonl"
DEFAULT_MODEL = "gpt-4o-mini"
TARGET_VALID = 1.0
# Wide enough for the table when piped (rich assumes 80 columns off a terminal).
console = Console(width=None if sys.stdout.isatty() else 160)


def email_text(email: dict[str, Any]) -> str:
    return f"Subject: {email['subject']}\n\n{email['body']}"


@dataclass(frozen=True)
class Feature:
    """One facade method: how it is called and which of its answer's fields are scored."""

    method: str
    arguments: Callable[[dict[str, Any]], tuple[Any, ...]]
    fields: tuple[str, ...] = ()  # scored against the labels (see score)


def as_text(email: dict[str, Any]) -> tuple[str]:
    return (email_text(email),)


FEATURES: dict[str, Feature] = {
    "reply": Feature("generate_email_response", as_text),
    "classify": Feature("classify_email", lambda e: (e["subject"], e["body"]), ("category",)),
    "extract": Feature("extract_meeting_info", as_text, ("date", "time", "location")),
    "suggest": Feature("quick_reply_suggestions", as_text),
    "summary": Feature("summarize_email_thread", as_text),
    "triage": Feature(
        "triage_email", as_text, ("needs_reply", "is_newsletter", "is_cold_outreach")
    ),
}
SHORT = {"needs_reply": "reply", "is_newsletter": "newsletter", "is_cold_outreach": "cold"}


def folded(value: Any) -> Any:
    """Strings compared without case and with runs of whitespace as one space."""
    return " ".join(value.split()).casefold() if isinstance(value, str) else value


def expected_values(feature: str, labels: dict[str, Any]) -> dict[str, Any]:
    if feature == "extract":
        meeting = labels["meeting"] or {}
        return {name: meeting.get(name) for name in ("date", "time", "location")}
    return {name: labels[name] for name in FEATURES[feature].fields}


def answered_values(feature: str, result: dict[str, Any]) -> dict[str, Any]:
    source = (result.get("meeting") or {}) if feature == "extract" else result
    return {name: source.get(name) for name in FEATURES[feature].fields}


@dataclass
class Call:
    """One facade call and how it was judged."""

    email_id: str
    lang: str
    success: bool
    error: str | None
    seconds: float
    answered_by: str | None
    prompt_tokens: int | None
    completion_tokens: int | None
    cost: float
    truncated: bool = False
    expected: dict[str, Any] = field(default_factory=dict)
    answered: dict[str, Any] = field(default_factory=dict)
    right: dict[str, bool] = field(default_factory=dict)


def call_once(service: AIService, feature: str, model: str, email: dict[str, Any]) -> Call:
    spec = FEATURES[feature]
    method = getattr(service, spec.method)
    started = time.perf_counter()
    try:
        result = method(*spec.arguments(email), model=model)
    except Exception as exc:  # the facade promises not to raise: say so if it does
        result = {"success": False, "error": f"raised {type(exc).__name__}: {exc}"}
    seconds = time.perf_counter() - started
    usage = result.get("usage") or {}
    success = result.get("success") is True
    call = Call(
        email_id=email["id"],
        lang=email["lang"],
        success=success,
        error=None if success else str(result.get("error", "no error given")),
        seconds=seconds,
        answered_by=result.get("model"),
        prompt_tokens=usage.get("prompt_tokens"),
        completion_tokens=usage.get("completion_tokens"),
        cost=float(result.get("cost") or 0.0),
        truncated=bool(result.get("truncated")),
    )
    if spec.fields:
        call.expected = expected_values(feature, email["labels"])
        call.answered = answered_values(feature, result) if success else {}
        call.right = {
            name: success and folded(call.answered[name]) == folded(value)
            for name, value in call.expected.items()
        }
    return call


@dataclass
class Row:
    model: str
    feature: str
    calls: list[Call]

    @property
    def valid(self) -> float:
        return sum(call.success for call in self.calls) / len(self.calls)

    def accuracy(self) -> dict[str, float]:
        names = FEATURES[self.feature].fields
        return {n: sum(c.right[n] for c in self.calls) / len(self.calls) for n in names}

    def seconds(self, fraction: float) -> float:
        ordered = sorted(call.seconds for call in self.calls)
        return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]

    def tokens(self) -> tuple[float, float] | None:
        counted = [c for c in self.calls if c.prompt_tokens is not None]
        if not counted:
            return None
        prompt = statistics.mean(c.prompt_tokens or 0 for c in counted)
        return prompt, statistics.mean(c.completion_tokens or 0 for c in counted)

    def cost_per_1000(self) -> float:
        return sum(call.cost for call in self.calls) / len(self.calls) * 1000

    def answered_by(self) -> str:
        return ", ".join(sorted({c.answered_by for c in self.calls if c.answered_by})) or "?"

    def failure_reasons(self) -> list[tuple[str, list[str]]]:
        reasons: dict[str, list[str]] = collections.defaultdict(list)
        for call in self.calls:
            if not call.success:
                reasons[call.error or ""].append(call.email_id)
        return sorted(reasons.items(), key=lambda item: -len(item[1]))

    def summary(self) -> dict[str, Any]:
        tokens = self.tokens()
        return {
            "model": self.model,
            "feature": self.feature,
            "answered_by": self.answered_by(),
            "calls": len(self.calls),
            "valid": self.valid,
            "accuracy": self.accuracy(),
            "truncated": sum(call.truncated for call in self.calls),
            "p50_s": self.seconds(0.5),
            "p90_s": self.seconds(0.9),
            "prompt_tokens_per_call": tokens and tokens[0],
            "completion_tokens_per_call": tokens and tokens[1],
            "cost_per_1000_usd": self.cost_per_1000(),
            "failures": {reason: ids for reason, ids in self.failure_reasons()},
        }


def accuracy_cell(row: Row) -> str:
    if row.feature == "reply":
        return f"truncated {sum(c.truncated for c in row.calls)}/{len(row.calls)}"
    parts = [f"{SHORT.get(name, name)} {share:.0%}" for name, share in row.accuracy().items()]
    return " · ".join(parts) or "—"


def percent(share: float) -> str:
    text = f"{share:.1%}"
    return text if share >= TARGET_VALID else f"[red]{text}[/red]"


def print_table(rows: list[Row], limit_note: str) -> None:
    table = Table(title=f"e-mail assistant on {limit_note}")
    for name in ("model", "answered by", "feature", "calls", "valid", "accuracy"):
        table.add_column(name, justify="right" if name in {"calls", "valid"} else "left")
    for name in ("p50 s", "p90 s", "tokens in + out", "$ / 1k e-mails"):
        table.add_column(name, justify="right")
    for row in rows:
        tokens = row.tokens()
        table.add_row(
            row.model,
            row.answered_by(),
            row.feature,
            str(len(row.calls)),
            percent(row.valid),
            accuracy_cell(row),
            f"{row.seconds(0.5):.2f}",
            f"{row.seconds(0.9):.2f}",
            "—" if tokens is None else f"{tokens[0]:.0f} + {tokens[1]:.0f}",
            f"{row.cost_per_1000():.4f}",
        )
    console.print(table)


def print_failures(rows: list[Row]) -> None:
    for row in rows:
        reasons = row.failure_reasons()
        if not reasons:
            continue
        failed = sum(len(ids) for _, ids in reasons)
        console.print(
            f"{row.model} / {row.feature}: {failed} of {len(row.calls)} calls failed",
            highlight=False,
        )
        for reason, ids in reasons[:3]:
            shown = ", ".join(ids[:6]) + (", ..." if len(ids) > 6 else "")
            console.print(f"  {len(ids)}x {reason}  [{shown}]", highlight=False, markup=False)
        if len(reasons) > 3:
            console.print(f"  ... and {len(reasons) - 3} other reasons (--json has them all)")


def print_totals(rows: list[Row], features: list[str]) -> None:
    for model in dict.fromkeys(row.model for row in rows):
        mine = [row for row in rows if row.model == model]
        total = sum(row.cost_per_1000() for row in mine)
        seconds = sum(statistics.median(c.seconds for c in row.calls) for row in mine)
        which = "all six features" if len(features) == len(FEATURES) else ", ".join(features)
        console.print(
            f"{model}, {which} on each e-mail: ${total:.4f} per 1,000 e-mails, "
            f"{seconds:.1f} s per e-mail at the p50s",
            highlight=False,
        )


def read_emails(limit: int | None) -> list[dict[str, Any]]:
    lines = DATA.read_text(encoding="utf-8").splitlines()
    emails = [json.loads(line) for line in lines if line.strip()]
    return emails[:limit] if limit else emails


def make_service(args: argparse.Namespace) -> tuple[AIService, str, Path | None]:
    if args.server:
        service = AIService(base_url=args.server, api_key=args.api_key)
        return service, f"server {args.server}", None
    home = Path(tempfile.mkdtemp(prefix="aiservice-email-eval-"))
    os.environ["AISERVICE_HOME"] = str(home)  # before the facade reads its settings
    for name in ("DATABASE_URL", "AISERVICE_DATABASE_URL"):
        os.environ.pop(name, None)
    config = str(args.config) if args.config else None
    where = f"embedded, AISERVICE_HOME={home}" + (f", config {args.config}" if config else "")
    return AIService(config=config), where, home


def run(
    service: AIService, models: list[str], features: list[str], emails: list[dict[str, Any]]
) -> tuple[list[Row], dict[str, float]]:
    rows, warm_up = [], {}
    for model in models:
        started = time.perf_counter()
        call_once(service, "triage", model, emails[0])  # loads the model; not counted
        warm_up[model] = time.perf_counter() - started
        for feature in features:
            started = time.perf_counter()
            calls = []
            for index, email in enumerate(emails, 1):
                calls.append(call_once(service, feature, model, email))
                console.print(
                    f"  {model} {feature:8} {index}/{len(emails)} {email['id']} "
                    f"{calls[-1].seconds:6.2f} s {'ok' if calls[-1].success else 'FAILED'}",
                    highlight=False,
                )
            rows.append(Row(model, feature, calls))
            console.print(
                f"{model} {feature}: {len(calls)} calls in {time.perf_counter() - started:.1f} s",
                highlight=False,
            )
    return rows, warm_up


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--model",
        action="append",
        dest="models",
        metavar="NAME",
        help=f"a model to evaluate (repeatable; default {DEFAULT_MODEL})",
    )
    parser.add_argument("--limit", type=int, help="only the first N e-mails of the set")
    parser.add_argument(
        "--features",
        default=",".join(FEATURES),
        help=f"comma-separated, among {','.join(FEATURES)} (default: all)",
    )
    parser.add_argument("--server", metavar="URL", help="a running aiservice (default: embedded)")
    parser.add_argument("--api-key", metavar="KEY", help="the server's key (with --server)")
    parser.add_argument("--config", type=Path, help="embedded only: a config.toml to use")
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write every call here")
    parser.add_argument("--keep-home", action="store_true", help="keep the embedded temp home")
    args = parser.parse_args()
    args.models = args.models or [DEFAULT_MODEL]
    args.features = [name.strip() for name in args.features.split(",") if name.strip()]
    unknown = sorted(set(args.features) - set(FEATURES))
    if unknown or not args.features:
        parser.error(f"unknown features {unknown}; choose among {', '.join(FEATURES)}")
    if args.server and not args.api_key:
        parser.error("--server needs --api-key")
    if args.api_key and not args.server:
        parser.error("--api-key is only used with --server")
    if args.config and args.server:
        parser.error("--config is for embedded mode; a server reads its own")
    if args.limit is not None and args.limit < 1:
        parser.error("--limit must be at least 1")
    return args


def main() -> int:
    args = parse_args()
    emails = read_emails(args.limit)
    load_start = os.getloadavg()
    started_at = datetime.datetime.now().astimezone()
    service, where, home = make_service(args)
    try:
        rows, warm_up = run(service, args.models, args.features, emails)
    finally:
        service.close()
        if home is not None and not args.keep_home:
            shutil.rmtree(home, ignore_errors=True)
    load_end = os.getloadavg()

    langs = collections.Counter(email["lang"] for email in emails)
    note = f"{len(emails)} e-mails ({', '.join(f'{n} {lang}' for lang, n in langs.items())})"
    if args.limit:
        note += f", --limit {args.limit}"
    console.print()
    print_table(rows, note)
    print_failures(rows)
    print_totals(rows, args.features)
    for model, seconds in warm_up.items():
        console.print(f"warm-up call of {model} (loads the model, not counted): {seconds:.1f} s")
    ok = all(row.valid >= TARGET_VALID for row in rows)
    below = [f"{row.model}/{row.feature}" for row in rows if row.valid < TARGET_VALID]
    console.print(
        f"target: 100 % valid on every model and feature: {'PASS' if ok else 'FAIL'}"
        + ("" if ok else f" ({', '.join(below)} below)"),
        highlight=False,
    )
    console.print(
        f"{where}; {platform.node()} ({platform.machine()}, {platform.system()} "
        f"{platform.release()}), {os.cpu_count()} CPUs, python {platform.python_version()}; "
        f"1-min load average {load_start[0]:.2f} before, {load_end[0]:.2f} after; "
        f"{started_at:%Y-%m-%d %H:%M %Z}",
        highlight=False,
    )
    if args.json:
        report = {
            "date": started_at.isoformat(timespec="seconds"),
            "where": where,
            "machine": platform.node(),
            "cpus": os.cpu_count(),
            "load_average": {"before": load_start, "after": load_end},
            "emails": len(emails),
            "warm_up_s": warm_up,
            "rows": [row.summary() for row in rows],
            "calls": [
                {"model": row.model, "feature": row.feature, **asdict(call)}
                for row in rows
                for call in row.calls
            ],
        }
        args.json.write_text(json.dumps(report, indent=2, ensure_ascii=False), encoding="utf-8")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
