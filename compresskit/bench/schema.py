"""The metric names a report may hold: unit, which direction is better, and how each is measured.

Gates, the Pareto front and ``compare`` read these names and nothing else, so a typo in a gates file is
caught against this table before anything is measured.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ..artifact import Format

SCHEMA_VERSION = 2  # 2: isolated harness, reference candidates, runtime settings, uncertainties


@dataclass(frozen=True)
class MetricInfo:
    unit: str
    direction: str  # "lower" or "higher" is better
    about: str


METRICS: dict[str, MetricInfo] = {
    "latency_ms_p50": MetricInfo("ms", "lower", "batch-1 generator latency, median of timed calls"),
    "latency_ms_p90": MetricInfo("ms", "lower", "batch-1 generator latency, 90th percentile"),
    "latency_ms_p99": MetricInfo("ms", "lower", "batch-1 generator latency, 99th percentile"),
    "throughput_ips": MetricInfo("images/s", "higher", "images per second at the largest measured batch"),
    "first_inference_ms": MetricInfo("ms", "lower", "fresh process: load + compile + first batch-1 call"),
    "peak_rss_mb": MetricInfo("MiB", "lower", "peak resident memory of a fresh process after its first call"),
    "size_mb": MetricInfo("MiB", "lower", "payload files on disk"),
    "params": MetricInfo("count", "lower", "generator parameters (of the torch model the artifact came from)"),
    "macs": MetricInfo("MACs/image", "lower", "multiply-accumulates per image (torch FLOP counter / 2)"),
    "gmacs_per_s": MetricInfo("GMAC/s", "higher", "effective compute rate: MACs per image / batch-1 p50"),
    "peak_gmacs_per_s": MetricInfo("GMAC/s", "higher", "the same runtime and precision on one large conv (bench.peak)"),
    "share_of_peak": MetricInfo("", "higher", "gmacs_per_s / peak_gmacs_per_s: how much of the backend's peak is used"),
    "e2e_latency_ms_p50": MetricInfo("ms", "lower", "caption -> MiniLM embedding -> image, batch 1, median"),
    "e2e_latency_ms_p90": MetricInfo("ms", "lower", "caption -> MiniLM embedding -> image, batch 1, 90th percentile"),
    "e2e_speedup_vs_baseline": MetricInfo(
        "x", "higher", "teacher pipeline (MiniLM + teacher, both in torch): its e2e p50 / this e2e p50, same run"),
    "speedup_vs_baseline": MetricInfo("x", "higher", "teacher in torch eager fp32: its p50 / this p50, same run"),
    "speedup_vs_exported_teacher": MetricInfo(
        "x", "higher", "teacher merely exported to this candidate's runtime and precision: its p50 / this p50"),
    "speedup_vs_teacher_int8": MetricInfo("x", "higher", "teacher's plain NNCF INT8 IR: its p50 / this p50, same run"),
    "benchmark_app_ms_p50": MetricInfo("ms", "lower", "OpenVINO benchmark_app median, same IR, shape, threads"),
    "kid": MetricInfo("", "lower", "kernel inception distance vs the real train split (Lite0 features)"),
    "kid_std": MetricInfo("", "lower", "std of KID over subsets"),
    "fid": MetricInfo("", "lower", "Frechet distance vs the real train split (Lite0 features)"),
    "r_precision": MetricInfo("", "higher", "true caption ranked first among it and 99 others (emoji32-align)"),
    "caption_similarity": MetricInfo("", "higher", "mean cosine of image and caption vectors (emoji32-align)"),
    "attr_accuracy": MetricInfo("", "higher", "shapes: objects with all four attributes as captioned"),
    "attr_accuracy_seen": MetricInfo("", "higher", "shapes: attr_accuracy on images of (colour, shape) pairings seen in train"),
    "attr_accuracy_unseen": MetricInfo("", "higher", "shapes: attr_accuracy on images holding a pairing never in train"),
    "attr_accuracy_unseen_1obj": MetricInfo("", "higher", "shapes: attr_accuracy_unseen, one-object captions"),
    "attr_accuracy_unseen_2obj": MetricInfo("", "higher", "shapes: attr_accuracy_unseen, two-object captions"),
    "diversity": MetricInfo("", "higher", "mean pairwise Lite0 cosine distance of 8 noise samples per caption"),
    "diversity_vs_real": MetricInfo("", "higher", "diversity / the real images' cross-style diversity (emoji)"),
    "psnr_vs_teacher": MetricInfo("dB", "higher", "PSNR against the teacher's image for the same inputs"),
    "ssim_vs_teacher": MetricInfo("", "higher", "SSIM against the teacher's image for the same inputs"),
    "perceptual_vs_teacher": MetricInfo("", "lower", "1 - cosine of Lite0 features vs the teacher's image"),
}



def pass_metrics() -> dict[str, MetricInfo]:
    """Figures passes declare (``Pass.metrics``: built-ins and plugins), reported under the step's name."""
    from ..registry import all_passes, pass_class

    found: dict[str, MetricInfo] = {}
    for name in all_passes():
        for metric_name, info in pass_class(name).metrics.items():
            found.setdefault(metric_name, MetricInfo(info.unit, info.direction, f"{name}: {info.about}"))
    return found


def known_metrics() -> dict[str, MetricInfo]:
    """Every metric name a report may hold and a gate may name: measured by the bench, or reported by a pass."""
    return {**pass_metrics(), **METRICS}


SPEED_METRICS = ("latency_ms_p50", "latency_ms_p90", "latency_ms_p99", "throughput_ips", "speedup_vs_baseline",
                 "speedup_vs_exported_teacher", "speedup_vs_teacher_int8", "benchmark_app_ms_p50",
                 "e2e_latency_ms_p50", "e2e_latency_ms_p90", "e2e_speedup_vs_baseline", "first_inference_ms",
                 "peak_rss_mb")
ROLES = ("baseline", "reference", "candidate")  # the teacher in torch; the teacher merely exported; a recipe step


def metric(name: str, value: float, n: int | None = None, **detail) -> dict:
    """One measurement as a report stores it: value, unit, direction, sample count, then any detail."""
    info = METRICS[name] if name in METRICS else known_metrics()[name]
    record = {"value": value, "unit": info.unit, "direction": info.direction}
    if n is not None:
        record["n"] = n
    return {**record, **detail}


# report.json's shape, checked when a report is read back (gate, compare) and in the tests


class MetricRecord(BaseModel):
    model_config = ConfigDict(extra="allow")  # threads, batch, spread, how, ... ride along

    value: float
    unit: str
    direction: Literal["lower", "higher"]
    n: int | None = Field(None, ge=1)
    stderr: float | None = Field(None, ge=0)  # standard error of the value, where it has one


class CandidateRecord(BaseModel):
    model_config = ConfigDict(extra="allow")

    name: str
    step: int = Field(ge=0)
    artifact_id: str
    format: Format
    backend: str
    role: Literal[ROLES]  # type: ignore[valid-type]
    final: bool
    metrics: dict[str, MetricRecord]
    by_threads: dict[str, dict[str, MetricRecord]]
    errors: dict[str, str] = {}

    @field_validator("metrics")
    @classmethod
    def _known_names(cls, metrics: dict) -> dict:
        unknown = sorted(set(metrics) - set(known_metrics()))
        if unknown:
            raise ValueError(f"unknown metric names {unknown}")
        return metrics


class GateRecord(BaseModel):
    model_config = ConfigDict(extra="allow")

    metric: str
    goal: str
    value: float
    candidate: str
    passed: bool
    observed: float | None
    threshold: float | None


class ReportRecord(BaseModel):
    model_config = ConfigDict(extra="allow")

    schema_version: Literal[SCHEMA_VERSION]  # type: ignore[valid-type]
    recipe: dict
    status: Literal["done", "failed"]
    candidates: list[CandidateRecord]
    gates: list[GateRecord]
    verdict: Literal["pass", "fail", "no gates"]
