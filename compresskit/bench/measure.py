"""Speed, memory and size of a baseline and its candidates, measured together in one run.

For each thread count (default 1 and 2), every candidate's runtime is loaded with that many threads and
all of them are timed in alternating rounds (``interleaved_latency``), so a slow spell of a noisy machine
hits each alike and ``speedup_vs_baseline`` (baseline p50 / candidate p50) survives it:

* batch 1: latency p50 / p90 / p99 over ``rounds x per_round`` calls after ``warmup`` calls;
* each larger batch (default 8 and 32): images/s = batch / median call time; ``throughput_ips`` is the
  largest batch's;
* end to end (batch 1): caption -> MiniLM embedding (uncached) -> image, p50;
* first inference and peak RSS: a fresh process per candidate (``bench.probe``);
* size on disk (payload files), params and MACs per image (of the torch model the artifact came from).

The deployed artifact is what runs (ONNX in onnxruntime, IR in OpenVINO, fp32 precision hint).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..artifact import Artifact
from ..passes.parity import parity_inputs
from ..runtimes import load_runtime
from .schema import metric
from .settings import SpeedSettings
from .speed import interleaved_latency, percentiles, probe

BACKENDS = {"torch": "torch", "onnx": "onnxruntime", "openvino": "openvino"}


@dataclass(frozen=True)
class Candidate:
    """One thing to measure: an artifact, under the name a report and a gate use for it."""

    name: str  # "baseline", or the step's pass name ("distill", "quantize_nncf", "prune#2" if repeated)
    artifact: Artifact
    step: int  # 0 for the baseline (the recipe's input)

    @property
    def backend(self) -> str:
        return BACKENDS[self.artifact.format]


def size_mb(artifact: Artifact) -> float:
    return sum((artifact.path / name).stat().st_size for name in artifact.files) / 2**20


def model_cost(artifact: Artifact, torch_ancestor: Artifact | None) -> dict:
    """Params and MACs/image from the torch model itself, or the torch model an export came from."""
    from ..models.io import load_torch_generator
    from ..models.stats import generator_stats

    source = artifact if artifact.format == "torch" else torch_ancestor
    if source is None:
        return {}
    stats = generator_stats(load_torch_generator(source.path))
    how = "counted on the torch model" if source is artifact else f"of the torch model it was exported from ({source.id})"
    return {"params": metric("params", stats["params"], how=how),
            "macs": metric("macs", stats["macs_per_image"], how=how)}


def _batch_calls(runtimes: dict, io: dict, batch: int, seed: int) -> dict[str, Callable[[], object]]:
    inputs = parity_inputs(io, batch, seed)
    return {name: (lambda rt=rt: rt(inputs)) for name, rt in runtimes.items()}


def _e2e_calls(runtimes: dict, io: dict, caption: str) -> dict[str, Callable[[], object]]:
    from ..text import TextEncoder

    encoder = TextEncoder(cache=False)
    z = parity_inputs(io, 1, 0)["z"]

    def call(rt):
        text = encoder.encode([caption]).numpy()
        return rt({"z": z, "text": text})

    return {name: (lambda rt=rt: call(rt)) for name, rt in runtimes.items()}


def measure_speed(candidates: list[Candidate], settings: SpeedSettings,
                  progress: Callable[[str], None] = lambda message: None) -> dict[str, dict[int, dict]]:
    """{candidate name: {threads: {metric name: record}}}; the first candidate is the baseline."""
    baseline = candidates[0].name
    io = candidates[0].artifact.io
    timing = dict(rounds=settings.rounds, per_round=settings.per_round, warmup=settings.warmup,
                  settle_s=settings.settle_s)
    how = (f"{settings.warmup} warm-up calls, then {settings.rounds} rounds x {settings.per_round} calls, "
           f"candidates interleaved (order rotated each round)"
           + (f", {settings.settle_s:g} s idle before each block" if settings.settle_s else ""))
    results: dict[str, dict[int, dict]] = {c.name: {} for c in candidates}
    for threads in settings.threads:
        progress(f"speed at {threads} thread(s)")
        runtimes = {c.name: load_runtime(c.artifact, threads) for c in candidates}
        latency = interleaved_latency(_batch_calls(runtimes, io, 1, 0), **timing)
        e2e = interleaved_latency(_e2e_calls(runtimes, io, settings.e2e_caption), **timing)
        per_batch = {b: interleaved_latency(_batch_calls(runtimes, io, b, b), **timing)
                     for b in settings.batch_sizes if b > 1}
        base_p50 = percentiles(latency[baseline])["p50"]
        for c in candidates:
            p = percentiles(latency[c.name])
            common = {"threads": threads, "batch": 1, "spread": {"iqr_ms": p["iqr"], "std_ms": p["std"]}, "how": how}
            record = {f"latency_ms_{q}": metric(f"latency_ms_{q}", p[q], p["n"], **common) for q in ("p50", "p90", "p99")}
            record["speedup_vs_baseline"] = metric("speedup_vs_baseline", base_p50 / p["p50"], p["n"], threads=threads,
                                                   baseline=baseline, how="ratio of interleaved batch-1 p50s")
            e = percentiles(e2e[c.name])
            record["e2e_latency_ms_p50"] = metric("e2e_latency_ms_p50", e["p50"], e["n"], threads=threads, batch=1,
                                                  spread={"iqr_ms": e["iqr"], "std_ms": e["std"]},
                                                  caption=settings.e2e_caption, how=how + "; text encoder uncached")
            by_batch = {b: b / (np.median(t[c.name]) / 1000.0) for b, t in per_batch.items()}
            if by_batch:
                largest = max(by_batch)
                record["throughput_ips"] = metric(
                    "throughput_ips", by_batch[largest], len(per_batch[largest][c.name]), threads=threads, batch=largest,
                    by_batch={str(b): round(v, 2) for b, v in by_batch.items()}, how=how)
            results[c.name][threads] = record
        del runtimes
    return results


def measure_footprint(candidate: Candidate, threads: int) -> dict:
    """First-inference time and peak RSS from a fresh process, plus size on disk."""
    found = probe(candidate.artifact.path, threads)
    how = "one fresh process: load + compile + first batch-1 call"
    return {
        "first_inference_ms": metric("first_inference_ms", found["first_inference_ms"], 1, threads=threads, how=how),
        "peak_rss_mb": metric("peak_rss_mb", found["peak_rss_mb"], 1, threads=threads,
                              before_loading_mb=round(found["baseline_rss_mb"], 1),
                              how="ru_maxrss of that process after its first call (includes Python + imports)"),
    }
