"""What moderation adds to a chat completion, measured from outside.

The script starts the project's fake upstream (in this process, on a free port) and a real
`aiservice serve` whose `gpt-4o-mini` is that upstream, then sends the same chat completion
(one user message of about 2,000 characters of ordinary e-mail text, non-streamed) over one
keep-alive connection, alternating between

  plain       no `moderation`
  moderated   `moderation` with `block` on both sides: the input is classified before the
              upstream call and the output as it arrives (the embedded classifier)

after a warm-up of each. It prints the p50 and p99 latency of each side and the difference of
the medians, against the target: moderation adds at most 5 ms p50 to a request of at most
2,000 characters. Exit status 1 if the target is missed.

    .venv/bin/python benchmarks/moderation_overhead.py --requests 300
"""

from __future__ import annotations

import argparse
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from rich.console import Console
from rich.table import Table

from aiservice.testing.fake_upstream import FakeUpstream

MASTER_KEY = "sk-bench-master-key"
TARGET_MS = 5.0
PARAGRAPH = (
    "Bonjour Claire, merci pour votre message de ce matin. Comme convenu lors de notre appel, "
    "je vous envoie le compte rendu de la réunion de lundi et la liste des actions. "
    "We agreed to move the quarterly review to Thursday afternoon, and Paul will prepare the "
    "budget figures before then. Could you confirm the room and send the invitation? "
)
MESSAGE = (PARAGRAPH * 8)[:2000]
MODERATION = {
    "model": "omni-moderation-latest",
    "policy": {"input": {"mode": "block"}, "output": {"mode": "block"}},
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(home: Path, upstream: FakeUpstream) -> tuple[subprocess.Popen, str]:
    (home / "config.toml").write_text(
        '[[models]]\nname = "smollm2-135m-instruct"\n\n'
        '[[models]]\nname = "gpt-4o-mini"\nprovider = "openai"\n'
        f'base_url = "{upstream.base_url}"\n',
        encoding="utf-8",
    )
    port = free_port()
    env = {**os.environ, "AISERVICE_HOME": str(home), "AISERVICE_MASTER_KEY": MASTER_KEY}
    env.pop("DATABASE_URL", None)
    env.pop("OPENAI_API_KEY", None)
    log = (home / "server.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "aiservice", "serve", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base_url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError((home / "server.log").read_text())
        try:
            if httpx.get(f"{base_url}/ready", timeout=1).status_code == 200:
                return process, base_url
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    process.kill()
    raise RuntimeError("server not ready in time")


def timed(client: httpx.Client, moderated: bool) -> float:
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": MESSAGE}]}
    if moderated:
        body["moderation"] = MODERATION
    started = time.perf_counter()
    answer = client.post("/v1/chat/completions", json=body)
    elapsed = (time.perf_counter() - started) * 1000
    answer.raise_for_status()
    if moderated and answer.json()["choices"][0]["finish_reason"] != "stop":
        raise RuntimeError("the benchmark's text was flagged: it must be benign")
    return elapsed


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200, help="per side")
    args = parser.parse_args()
    samples: dict[str, list[float]] = {"plain": [], "moderated": []}
    with FakeUpstream(record_requests=False) as upstream, tempfile.TemporaryDirectory() as home:
        process, base_url = start_server(Path(home), upstream)
        headers = {"Authorization": f"Bearer {MASTER_KEY}"}
        try:
            with httpx.Client(base_url=base_url, headers=headers, timeout=30) as client:
                for _ in range(20):  # warm-up: connections, the classifier, caches
                    timed(client, False), timed(client, True)
                for i in range(args.requests):
                    for side in ("plain", "moderated") if i % 2 else ("moderated", "plain"):
                        samples[side].append(timed(client, side == "moderated"))
        finally:
            process.terminate()
            process.wait(timeout=15)
    table = Table(
        title=f"moderation overhead: {len(MESSAGE)}-character message, {args.requests} per side"
    )
    for column in ("side", "p50 ms", "p99 ms"):
        table.add_column(column, justify="right" if column != "side" else "left")
    for side, values in samples.items():
        table.add_row(side, f"{statistics.median(values):.2f}", f"{percentile(values, 0.99):.2f}")
    added = statistics.median(samples["moderated"]) - statistics.median(samples["plain"])
    verdict = "PASS" if added <= TARGET_MS else "FAIL"
    console = Console()
    console.print(table)
    console.print(f"added p50: {added:.2f} ms (target ≤ {TARGET_MS} ms): {verdict}")
    console.print(f"{platform.node()}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}")
    return 0 if verdict == "PASS" else 1


if __name__ == "__main__":
    sys.exit(main())
