"""Timing artifacts fairly on a noisy machine.

* ``percentiles``: p50 / p90 / p99 of per-call latencies (numpy's linear interpolation).
* ``interleaved_latency``: several runtimes timed in alternating rounds (order rotated every round), so
  a slow spell of the machine hits every candidate alike and ratios between them stay meaningful.
* ``probe``: load + compile + first call and peak resident memory, in a fresh process per artifact (a
  process's peak RSS cannot be reset, so each measurement needs its own).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..errors import CompresskitError


def percentiles(samples_ms: list[float]) -> dict[str, float]:
    values = np.asarray(samples_ms, dtype=np.float64)
    if values.size == 0:
        raise ValueError("no timings")
    p25, p50, p75, p90, p99 = np.percentile(values, [25, 50, 75, 90, 99])
    return {"p50": float(p50), "p90": float(p90), "p99": float(p99), "n": int(values.size),
            "iqr": float(p75 - p25), "std": float(values.std())}


def time_calls(fn: Callable[[], object], repeats: int) -> list[float]:
    """Wall time of ``repeats`` calls, each in milliseconds."""
    timings = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        timings.append((time.perf_counter() - started) * 1000.0)
    return timings


def interleaved_latency(calls: dict[str, Callable[[], object]], *, rounds: int, per_round: int,
                        warmup: int, settle_s: float = 0.0) -> dict[str, list[float]]:
    """Per-call latencies of each named call, measured in ``rounds`` alternating rounds after a warm-up.

    ``settle_s``: idle time before each block (default none). Measured on the edge recipe's artifacts at
    2 threads, 0.1 s changed no p50 beyond run-to-run noise, so the default interleaves back to back.
    """
    for fn in calls.values():
        time_calls(fn, warmup)
    names = list(calls)
    timings: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        for name in names[r % len(names):] + names[: r % len(names)]:
            time.sleep(settle_s)
            timings[name].extend(time_calls(calls[name], per_round))
    return timings


def probe(artifact_dir: Path, threads: int | None, timeout_s: float = 600) -> dict:
    """First-inference time and peak RSS of a fresh process that loads the artifact and runs it once."""
    command = [sys.executable, "-m", "compresskit.bench.probe", str(artifact_dir), str(threads or 0)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise CompresskitError(f"probing {artifact_dir} failed: {last}")
    return json.loads(done.stdout.strip().splitlines()[-1])
