"""The embedded moderation classifier on the project's labelled sets: precision, recall and
F1 per category, and what it costs per text.

    .venv/bin/python benchmarks/moderation_eval.py              # both sets, 5 latency passes
    .venv/bin/python benchmarks/moderation_eval.py --errors     # also list every wrong text
    .venv/bin/python benchmarks/moderation_eval.py --passes 9 --json out.json

Sets (src/aiservice/moderation/data/): `moderation_eval.jsonl`, the labelled set the
lexicons were tuned on, and `moderation_holdout.jsonl`, written afterwards with new texts and
read once before its few fixes (docs/moderation.md gives both runs). Each line is
{"text", "lang", "labels"}; a category counts as predicted when the verdict flags it.

Per set the table gives, per category, support (texts labelled with it), TP/FP/FN, precision,
recall and F1, then the same for "flagged at all" and per language. Latency is one
`LocalModerator.verdict` call (normalisation, lexicon, offensive model, thresholds), timed
with perf_counter (and its thread's CPU time) over --passes passes after one warm-up pass,
for three kinds of input:

  short      every text of both sets as written (mostly one sentence)
  mail 2000  ordinary mail, 2,000 characters: the sets' benign texts joined until 2,000
             characters, from 40 different starting points (so dense in look-alikes:
             harsher than real mail, since more cues are tried)
  mixed 2000 the same from all texts, flagged ones included

Load is `LocalModerator().load()` in this fresh process: importing alt-profanity-check
(joblib, scikit-learn) and compiling the lexicon. The footer gives the load average before
and after; on the 2-core machine anything else running moves p99 first.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from aiservice.moderation.categories import CATEGORIES
from aiservice.moderation.local import LocalModerator

SETS = ("moderation_eval.jsonl", "moderation_holdout.jsonl")
LONG = 2000


@dataclass
class Tally:
    """True and false positives and false negatives for one row of the table."""

    support: int = 0
    tp: int = 0
    fp: int = 0
    fn: int = 0

    def add(self, expected: bool, predicted: bool) -> None:
        self.support += expected
        self.tp += expected and predicted
        self.fp += predicted and not expected
        self.fn += expected and not predicted

    def precision(self) -> float | None:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else None

    def recall(self) -> float | None:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else None

    def f1(self) -> float | None:
        p, r = self.precision(), self.recall()
        return 2 * p * r / (p + r) if p and r else None


@dataclass
class SetResult:
    name: str
    texts: int
    rows: dict[str, Tally] = field(default_factory=dict)
    errors: list[tuple[str, list[str], list[str]]] = field(default_factory=list)


def read_set(file_name: str) -> list[dict]:
    data = resources.files("aiservice.moderation") / "data" / file_name
    return [json.loads(line) for line in data.read_text(encoding="utf-8").splitlines() if line]


def evaluate(moderator: LocalModerator, file_name: str) -> SetResult:
    rows = read_set(file_name)
    result = SetResult(file_name, len(rows))
    keys = [*CATEGORIES, "flagged at all", "flagged at all, en", "flagged at all, fr"]
    result.rows = {key: Tally() for key in keys}
    for row, verdict in zip(rows, moderator.verdicts([row["text"] for row in rows]), strict=True):
        expected, predicted = set(row["labels"]), set(verdict.flagged_categories)
        for category in CATEGORIES:
            result.rows[category].add(category in expected, category in predicted)
        result.rows["flagged at all"].add(bool(expected), bool(predicted))
        result.rows[f"flagged at all, {row['lang']}"].add(bool(expected), bool(predicted))
        if expected != predicted:
            result.errors.append(
                (row["text"], sorted(expected - predicted), sorted(predicted - expected))
            )
    return result


def long_inputs(texts: list[str], count: int = 40) -> list[str]:
    """`count` texts of about LONG characters, each the given texts joined from another start."""
    built = []
    for start in range(count):
        parts, length, index = [], 0, start
        while length < LONG:
            part = texts[index % len(texts)]
            parts.append(part)
            length += len(part) + 1
            index += 7  # a stride, so that neighbours in the file are not always together
        built.append(" ".join(parts)[:LONG])
    return built


def latencies_ms(
    moderator: LocalModerator, texts: list[str], passes: int
) -> tuple[list[float], list[float]]:
    """Wall-clock and CPU milliseconds per call. On a busy machine the wall tail grows when
    the process is descheduled; its CPU time does not."""
    for text in texts:  # warm-up
        moderator.verdict(text)
    wall, cpu = [], []
    for _ in range(passes):
        for text in texts:
            started, started_cpu = time.perf_counter(), time.thread_time()
            moderator.verdict(text)
            cpu.append((time.thread_time() - started_cpu) * 1000)
            wall.append((time.perf_counter() - started) * 1000)
    return wall, cpu


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def number(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}"


def print_set(result: SetResult, show_errors: bool) -> None:
    print(f"\n{result.name}: {result.texts} texts\n")
    print("| category | support | TP | FP | FN | precision | recall | F1 |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for key, tally in result.rows.items():
        cells = [tally.support, tally.tp, tally.fp, tally.fn]
        scores = [number(tally.precision()), number(tally.recall()), number(tally.f1())]
        print(f"| {key} | " + " | ".join(str(cell) for cell in cells + scores) + " |")
    if show_errors:
        for text, missed, extra in result.errors:
            print(f"  missed {missed} extra {extra}: {text}")
    else:
        print(
            f"\n{len(result.errors)} texts with at least one wrong category (--errors lists them)"
        )


def main(passes: int, show_errors: bool, json_path: Path | None) -> None:
    load_before = os.getloadavg()
    started = time.perf_counter()
    moderator = LocalModerator()
    moderator.load()
    load_s = time.perf_counter() - started

    results = [evaluate(moderator, name) for name in SETS]
    for result in results:
        print_set(result, show_errors)

    every = [row for name in SETS for row in read_set(name)]
    texts = [row["text"] for row in every]
    benign = [row["text"] for row in every if not row["labels"]]
    inputs = {
        "short": texts,
        f"mail {LONG}": long_inputs(benign),
        f"mixed {LONG}": long_inputs(texts),
    }
    timings = {kind: latencies_ms(moderator, batch, passes) for kind, batch in inputs.items()}
    print(f"\nlatency per text, ms ({passes} passes after a warm-up)\n")
    print("| input | texts | mean chars | p50 | p90 | p99 | max | CPU p50 | CPU p99 |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for kind, (wall, cpu) in timings.items():
        chars = statistics.mean(len(text) for text in inputs[kind])
        marks = [percentile(wall, q) for q in (0.5, 0.9, 0.99)] + [max(wall)]
        marks += [percentile(cpu, 0.5), percentile(cpu, 0.99)]
        print(
            f"| {kind} | {len(inputs[kind])} | {chars:.0f} | "
            + " | ".join(f"{mark:.3f}" for mark in marks)
            + " |"
        )
    load_after = os.getloadavg()
    print(
        f"\nload (import alt-profanity-check + compile the lexicon): {load_s:.2f} s; "
        f"{os.cpu_count()} CPUs, {platform.python_implementation()} {platform.python_version()}; "
        f"load average {load_before[0]:.2f} before, {load_after[0]:.2f} after"
    )
    if json_path is not None:
        dump = {
            "load_s": load_s,
            "sets": {r.name: {k: vars(t) for k, t in r.rows.items()} for r in results},
            "latency_ms": {kind: {"wall": w, "cpu": c} for kind, (w, c) in timings.items()},
        }
        json_path.write_text(json.dumps(dump, indent=1))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--passes", type=int, default=5)
    parser.add_argument("--errors", action="store_true", help="list every wrongly judged text")
    parser.add_argument("--json", type=Path, default=None, help="write every sample here")
    arguments = parser.parse_args()
    main(arguments.passes, arguments.errors, arguments.json)
