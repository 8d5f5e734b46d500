"""Timing primitives (the isolated harness that schedules them is ``bench.harness``).

* ``percentiles``: p50 / p90 / p99 of per-call latencies (numpy's linear interpolation).
* ``ratio_interval``: a block-bootstrap interval of a speedup (ratio of medians) over the timed rounds;
* ``time_calls``: wall time of each of N calls.
* ``probe``: load + compile + first call and peak resident memory, in a fresh process per artifact (a
  process's peak RSS cannot be reset, so each measurement needs its own).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import numpy as np

from ..errors import CompresskitError
from ..runtimes import Deployment


def percentiles(samples_ms: list[float]) -> dict[str, float]:
    values = np.asarray(samples_ms, dtype=np.float64)
    if values.size == 0:
        raise ValueError("no timings")
    p25, p50, p75, p90, p99 = np.percentile(values, [25, 50, 75, 90, 99])
    return {"p50": float(p50), "p90": float(p90), "p99": float(p99), "n": int(values.size),
            "iqr": float(p75 - p25), "std": float(values.std())}


def ratio_interval(reference_ms: list[float], candidate_ms: list[float], per_round: int, *, level: float = 0.95,
                   resamples: int = 2000, seed: int = 0) -> tuple[float, float]:
    """Bootstrap interval of median(reference) / median(candidate) over the timed rounds.

    Both lists hold ``per_round`` calls per round, round after round, timed in the same rounds (the harness's
    interleaved schedule): a resample draws whole rounds, the same ones for both, so a slow spell that hit both
    in one round stays paired, and calls within a round are not treated as independent (block bootstrap)."""
    ref = np.asarray(reference_ms, dtype=np.float64)
    cand = np.asarray(candidate_ms, dtype=np.float64)
    rounds = min(len(ref), len(cand)) // per_round
    if rounds < 2:
        ratio = float(np.median(ref) / np.median(cand))
        return ratio, ratio
    ref, cand = ref[:rounds * per_round].reshape(rounds, per_round), cand[:rounds * per_round].reshape(rounds, per_round)
    picks = np.random.default_rng(seed).integers(0, rounds, size=(resamples, rounds))
    ratios = np.median(ref[picks].reshape(resamples, -1), axis=1) / np.median(cand[picks].reshape(resamples, -1), axis=1)
    low, high = np.quantile(ratios, [(1 - level) / 2, (1 + level) / 2])
    return float(low), float(high)


def launches_ratio_interval(launches: list[tuple[list[float], list[float]]], per_round: int, *,
                            level: float = 0.95, resamples: int = 2000, seed: int = 0) -> tuple[float, float]:
    """Bootstrap interval of median(reference) / median(candidate) over timings from several worker launches.

    ``launches``: (reference ms, candidate ms) of each launch, timed together as ``ratio_interval`` expects. Two
    processes of the same artifacts can differ by more than the rounds of one of them vary (measured: the same
    bundle's end-to-end p50 moved 1.56-2.61 ms between benches, AVX2), so a resample draws launches first (with
    replacement), then whole rounds within each drawn launch: the interval holds the launch-to-launch spread.
    One launch: ``ratio_interval``."""
    usable = [(np.asarray(r, dtype=np.float64), np.asarray(c, dtype=np.float64)) for r, c in launches]
    usable = [(r, c) for r, c in usable if min(len(r), len(c)) // per_round >= 1]
    if len(usable) < 2:
        ref, cand = usable[0] if usable else launches[0]
        return ratio_interval(list(ref), list(cand), per_round, level=level, resamples=resamples, seed=seed)
    blocks = []
    for ref, cand in usable:
        rounds = min(len(ref), len(cand)) // per_round
        blocks.append((ref[:rounds * per_round].reshape(rounds, per_round),
                       cand[:rounds * per_round].reshape(rounds, per_round)))
    rng = np.random.default_rng(seed)
    ratios = np.empty(resamples)
    for i in range(resamples):
        refs, cands = [], []
        for k in rng.integers(0, len(blocks), size=len(blocks)):
            ref, cand = blocks[k]
            picks = rng.integers(0, len(ref), size=len(ref))
            refs.append(ref[picks].ravel())
            cands.append(cand[picks].ravel())
        ratios[i] = np.median(np.concatenate(refs)) / np.median(np.concatenate(cands))
    low, high = np.quantile(ratios, [(1 - level) / 2, (1 + level) / 2])
    return float(low), float(high)


def time_calls(fn: Callable[[], object], repeats: int) -> list[float]:
    """Wall time of ``repeats`` calls, each in milliseconds."""
    timings = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        timings.append((time.perf_counter() - started) * 1000.0)
    return timings


def warm_up(fn: Callable[[], object], calls: int, seconds: float = 0.0) -> int:
    """Call ``fn`` at least ``calls`` times and for at least ``seconds``; returns how many calls it took.

    A freshly compiled model runs slower for its first few hundred calls (measured here on the edge INT8 IR:
    ~1.3 ms for the first ~500 calls of a fresh process, ~0.9 ms after), so warm-up is counted in time too.
    """
    started, done = time.perf_counter(), 0
    while done < calls or time.perf_counter() - started < seconds:
        fn()
        done += 1
    return done


def probe(artifact_dir: Path, deploy: Deployment | int | None = None, timeout_s: float = 600) -> dict:
    """First-inference time and peak RSS of a fresh process that loads the artifact and runs it once.

    ``deploy``: how the runtime is set up (a thread count alone: batch 1, latency hint, f32).
    """
    if not isinstance(deploy, Deployment):
        deploy = Deployment(threads=deploy, batch=1, hint="latency")
    command = [sys.executable, "-m", "compresskit.bench.probe", str(artifact_dir), json.dumps(asdict(deploy))]
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise CompresskitError(f"probing {artifact_dir} failed: {last}")
    return json.loads(done.stdout.strip().splitlines()[-1])
