"""The metric names a report may hold: unit, which direction is better, and how each is measured.

Gates, the Pareto front and ``compare`` read these names and nothing else, so a typo in a gates file is
caught against this table before anything is measured.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ..artifact import Format
from ..errors import ArtifactError

REPORT_JSON = "report.json"
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
    from ..registry import (  # the registry imports pass classes (torch) on lookup: only when a plugin metric is read
        all_passes,
        pass_class,
    )

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


# report.json's shape: the one object from the bench to the gates, ``compare`` and the library (``compresskit.Report``)


class MetricRecord(BaseModel):
    """One measured figure: value, unit, which direction is better, sample count, uncertainty, how measured."""

    model_config = ConfigDict(extra="allow")  # threads, batch, spread, ... ride along

    value: float
    unit: str
    direction: Literal["lower", "higher"]
    n: int | None = Field(None, ge=1)
    stderr: float | None = Field(None, ge=0)  # standard error of the value, where it has one
    interval: list[float] | None = None  # a speedup's 95% interval (block bootstrap over the timed rounds)
    how: str | None = None


class CandidateRecord(BaseModel):
    """One measured artifact: the baseline (teacher in torch), a reference (the teacher merely exported) or a step."""

    model_config = ConfigDict(extra="allow")

    name: str
    step: int = Field(ge=0)
    artifact_id: str
    format: Format
    backend: str
    precision: str = "f32"
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

    def value(self, metric_name: str, threads: int | None = None) -> float | None:
        """The figure's value (at ``threads`` for a speed figure measured at several), or None if not measured."""
        table = self.by_threads.get(str(threads), {}) if threads is not None else self.metrics
        record = table.get(metric_name)
        return None if record is None else record.value


class GateResult(BaseModel):
    """A gate and what it found: observed value, resolved threshold, passed, and why when it failed."""

    model_config = ConfigDict(extra="allow")

    metric: str
    goal: str
    value: float
    candidate: str
    threads: int | None = None
    direction: Literal["lower", "higher"] | None = None
    passed: bool
    observed: float | None
    threshold: float | None
    baseline: float | None = None
    reason: str | None = None
    observed_interval: list[float] | None = None
    decided: Literal["clear", "marginal"] | None = None  # the interval on one side of the threshold, or across it
    remeasured: int | None = None  # times the bench timed a straddling speedup again before deciding


class Report(BaseModel):
    """What ``compresskit run`` / ``bench`` measured (``report.json``), typed.

    ``Report.load(path)`` reads one back (a run folder or its report.json), ``report.candidate("final")`` is
    the recipe's last step, ``report.table()`` the headline table, ``report.verdict`` pass / fail / no gates.
    """

    model_config = ConfigDict(extra="allow")  # settings, environment, pareto, samples, timings ... ride along

    schema_version: Literal[SCHEMA_VERSION]  # type: ignore[valid-type]
    recipe: dict
    status: Literal["done", "failed"]
    candidates: list[CandidateRecord]
    gates: list[GateResult]
    verdict: Literal["pass", "fail", "no gates", "not measured"]
    steps: list[dict] = []  # the run's steps (run.json): pass, ids, cached, seconds, status
    final_step: str | None = None
    failed_step: int | None = None
    error: str | None = None
    run_dir: str | None = None
    headline_threads: int | None = None
    frontier: dict | None = None

    @classmethod
    def load(cls, path: str | Path) -> Report:
        """A report.json, given its path or its run folder; ArtifactError (one line) if missing or malformed."""
        return load_report(path)

    @property
    def passed(self) -> bool:
        """True when every gate passed (and the run did not fail); a report without gates passes."""
        return self.verdict != "fail"

    @property
    def failed_gates(self) -> list[GateResult]:
        return [g for g in self.gates if not g.passed]

    def candidate(self, name: str) -> CandidateRecord:
        """The named candidate; ``final`` is the recipe's last step, ``baseline`` the teacher in torch."""
        if name == "final" or name.startswith("final@"):
            final = next((c for c in self.candidates if c.final), None)
            name = (final.name if final else "final") + name[len("final"):]
        found = next((c for c in self.candidates if c.name == name), None)
        if found is None:
            known = ", ".join(c.name for c in self.candidates) or "none: the run failed before the bench"
            raise KeyError(f"no candidate {name!r} in this report (candidates: {known})")
        return found

    def table(self, columns: tuple[str, ...] | None = None) -> str:
        """The headline table (one row a candidate) as Markdown, as report.md has it."""
        from .markdown import (  # markdown imports schema (the table's metric names): a cycle
            COLUMNS,
            md_table,
            table_rows,
        )

        return md_table(*table_rows(self.to_json()["candidates"], columns=columns or COLUMNS))

    def to_json(self) -> dict:
        """The plain JSON form, as written to report.json (the fields it was built with, nothing added)."""
        return self.model_dump(mode="json", exclude_unset=True)


def load_report(path: str | Path) -> Report:
    """A report.json, given its path or its run folder; ArtifactError (one line) if missing or malformed."""
    path = Path(path)
    run_dir = path.parent
    if path.is_dir():
        run_dir, path = path, path / REPORT_JSON
    try:
        raw = json.loads(path.read_text("utf-8"))
    except FileNotFoundError:
        raise ArtifactError(f"{run_dir} has no {REPORT_JSON}; measure it first with `compresskit bench {run_dir}`") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ArtifactError(f"{path} is unreadable ({exc}); re-measure with `compresskit bench {run_dir}`") from None
    if not isinstance(raw, dict) or "schema_version" not in raw:
        raise ArtifactError(f"{path} is not a compresskit report (no schema_version)")
    if raw["schema_version"] != SCHEMA_VERSION:
        raise ArtifactError(f"{path}: schema_version {raw['schema_version']!r} is not {SCHEMA_VERSION}; "
                            f"re-measure with `compresskit bench RUN_DIR`")
    return validated_report(raw, f"{path}", "; re-measure with `compresskit bench RUN_DIR`")


def validated_report(raw: dict, where: str, fix: str = "") -> Report:
    """``raw`` as a Report; ArtifactError naming the first field that does not fit."""
    try:
        return Report.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"])
        raise ArtifactError(f"{where}: {field}: {first['msg']}{fix}") from None
