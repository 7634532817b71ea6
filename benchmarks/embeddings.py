"""Encode speed of the bundled all-MiniLM-L6-v2 on numpy, in-process (no server, no HTTP).

Rows: one text of about 100 tokens, then batches of 1 and 32 such texts, each timed over
`--repeats` runs after one warm-up; texts per second and milliseconds per call, median and
best. The BLAS library and its thread count are printed first: on a shared machine, other
processes' load shows up here directly.

    .venv/bin/python benchmarks/embeddings.py --repeats 10
"""

from __future__ import annotations

import argparse
import statistics
import time

from threadpoolctl import threadpool_info

from aiservice.providers.sentence_encoder import SentenceEncoder, bundled_model_dir

# About 100 tokens of e-mail text once tokenized ([CLS] and [SEP] included).
TEXT = (
    "Hello Marie, thank you for sending the revised contract on Tuesday. I have read the new "
    "payment terms and they look fine to me, but the delivery date in section four still says "
    "the first of March, while we agreed on the fifteenth during our call. Could you correct it "
    "and send me a final version? I will sign it as soon as it arrives, and the invoice can "
    "go out the same week. Best regards, Paul."
)


def timed(encoder: SentenceEncoder, batch: list[list[int]], repeats: int) -> list[float]:
    encoder.encode(batch)  # warm-up: first-touch of the weights, BLAS thread start
    seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        encoder.encode(batch)
        seconds.append(time.perf_counter() - started)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    for pool in threadpool_info():
        print(f"{pool['internal_api']} {pool.get('version')}: {pool['num_threads']} threads")
    started = time.perf_counter()
    encoder = SentenceEncoder(bundled_model_dir())
    print(f"model loaded in {(time.perf_counter() - started) * 1000:.0f} ms")
    [ids] = encoder.tokenized([TEXT])
    print(f"text: {len(ids)} tokens\n")
    print(
        f"{'batch':>5}  {'texts/s (median)':>16}  {'ms/call (median)':>16}  {'ms/call (best)':>14}"
    )
    for size in (1, 32):
        seconds = timed(encoder, [ids] * size, args.repeats)
        median = statistics.median(seconds)
        best = min(seconds)
        print(f"{size:>5}  {size / median:>16.1f}  {median * 1000:>16.1f}  {best * 1000:>14.1f}")


if __name__ == "__main__":
    main()
