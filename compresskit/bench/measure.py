"""Speed, memory and size of the baselines and the candidates, measured together in one run.

For each thread count (default 1 and 2), every candidate runs in a worker process of its own, set up as
it would be deployed for the scenario (``Candidate.deployment``), and the harness times one worker at a
time in seeded random order (``bench.harness``):

* batch 1, static shapes, latency hint: p50 / p90 / p99 over ``rounds x per_round`` calls, after a
  warm-up of ``warmup`` calls and ``warmup_s`` seconds, each block after ``block_warmup`` untimed calls
  and ``block_warmup_s`` seconds (a fresh model runs slow for its first hundreds of calls; caches refill);
* each larger batch (default 8 and 32), static shapes, throughput hint (OpenVINO runs its streams with
  async requests): images/s per round, median over rounds; ``throughput_ips`` is the largest batch's;
* end to end (batch 1): caption -> text embedding (MiniLM in torch, uncached; a bundle's own tokenizer and
  encoder) -> image, p50 / p90, and its speedup over the teacher pipeline (MiniLM + teacher, both in torch);
* first inference and peak RSS: a fresh process per candidate (``bench.probe``), deployed the same way;
* size on disk (payload files), params and MACs per image (of the torch model the artifact came from);
* effective GMAC/s (MACs per image / batch-1 p50) beside the runtime's measured peak at the same precision
  on one large convolution (``bench.peak``): how much of the machine a candidate leaves unused.

Three baselines give each speedup its meaning: ``baseline`` is the teacher as the user has it (torch
eager fp32); ``teacher_onnx`` / ``teacher_openvino`` are the teacher merely exported to a runtime (fp32),
and ``teacher_int8`` its plain NNCF INT8 export (``bench.baselines``). ``speedup_vs_exported_teacher``
compares a candidate with the teacher exported to the candidate's own runtime and precision, and
``speedup_vs_teacher_int8`` with the teacher's plain INT8 IR: the gain a plain export would not give.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..artifact import FORMATS, Artifact, Format
from ..runtimes import ONNX_FILE, OPENVINO_XML, Deployment
from ..runtimes.bundle import BUNDLE_FILE
from .harness import WorkerPool
from .peak import HOW as PEAK_HOW
from .peak import measure_peaks, peak_kind
from .schema import metric
from .settings import SpeedSettings
from .speed import launches_ratio_interval, percentiles, probe, ratio_interval

TEACHER_INT8 = "teacher_int8"


@dataclass(frozen=True)
class Candidate:
    """One thing to measure: an artifact, under the name a report and a gate use for it."""

    name: str  # "baseline", a reference ("teacher_openvino"), or a step's name ("quantize_nncf", "prune#2", "x@bf16")
    artifact: Artifact
    step: int  # 0 for the baseline and the references (not steps of the recipe)
    role: str = "candidate"  # "baseline" | "reference" | "candidate"
    precision: str = "f32"  # OpenVINO inference precision this candidate runs at

    @property
    def backend(self) -> str:
        return FORMATS[Format(self.artifact.format)].backend

    def deployment(self, threads: int, batch: int) -> Deployment:
        """Batch 1: static shape + latency hint; a larger batch: static shape + throughput hint."""
        hint = "latency" if batch == 1 else "throughput"
        return Deployment(threads=threads, batch=batch, hint=hint, precision=self.precision)  # type: ignore[arg-type]


def reference_name(candidate: Candidate, names: set[str]) -> str | None:
    """The teacher exported to this candidate's runtime and precision (the torch teacher for torch)."""
    name = FORMATS[Format(candidate.artifact.format)].reference
    if candidate.precision != "f32" and candidate.artifact.format == "openvino":
        name = f"{name}@{candidate.precision}"
    return name if name in names else None


def size_mb(artifact: Artifact) -> float:
    return sum((artifact.path / name).stat().st_size for name in artifact.files) / 2**20


def model_cost(artifact: Artifact, torch_ancestor: Artifact | None) -> dict:
    """Params and MACs/image from the torch model itself, or the torch model an export came from."""
    from ..models.io import load_model  # imports torch: only a candidate with a torch model pays for it
    from ..models.stats import generator_stats  # imports torch, as above

    source = artifact if artifact.format == "torch" else torch_ancestor
    if source is None:
        return {}
    stats = generator_stats(load_model(source.path))
    how = "counted on the torch model" if source is artifact else f"of the torch model it was exported from ({source.id})"
    return {"params": metric("params", stats["params"], how=how),
            "macs": metric("macs", stats["macs_per_image"], how=how)}


INTERVAL_HOW = ("interval: 95% block bootstrap over the timed rounds (2,000 resamples of whole rounds, the same "
                "rounds for both, seeded)")


def _how(settings: SpeedSettings) -> str:
    return (f"each candidate in its own worker process, deployed for the scenario; >= {settings.warmup} warm-up calls "
            f"and >= {settings.warmup_s:g} s, "
            f"then {settings.rounds} rounds x {settings.per_round} calls (each block after >= {settings.block_warmup} "
            f"untimed calls and >= {settings.block_warmup_s:g} s), one worker busy at a time, the others' threads "
            f"quiet, seeded random order each round")


def chosen_names(setting: bool | list[str], candidates: list[Candidate], final_name: str | None) -> list[str]:
    """The candidates a ``bench.speed`` list names (``final``: the recipe's last step), in measuring order;
    ``True``: every candidate, ``False``: none."""
    if isinstance(setting, bool):
        return [c.name for c in candidates] if setting else []
    wanted = {final_name if name == "final" else name for name in setting}
    return [c.name for c in candidates if c.name in wanted]


def _time_one_thread_count(candidates: list[Candidate], settings: SpeedSettings, threads: int, seed: int,
                           e2e_names: list[str]) -> tuple[dict, dict]:
    """({name: {"latency": ms list, "e2e": ms list, batch: [ips per round]}}, {name: {scenario: settings}})."""
    names = [c.name for c in candidates]
    timed: dict[str, dict] = {n: {} for n in names}
    runtime_settings: dict[str, dict] = {n: {} for n in names}
    with WorkerPool(names) as pool:
        loaded = pool.load("batch1", {c.name: (c.artifact.path, c.deployment(threads, 1)) for c in candidates})
        for name, found in loaded.items():
            runtime_settings[name]["batch 1 (latency, e2e)"] = found
        block = {"warmup": settings.block_warmup, "warmup_s": settings.block_warmup_s, "calls": settings.per_round}
        latency = {n: {"op": "latency", "key": "batch1", "batch": 1, **block} for n in names}
        e2e = {n: {"op": "e2e", "key": "batch1", "caption": settings.e2e_caption, **block} for n in e2e_names}
        first = {n: {**latency[n], "warmup": settings.warmup, "warmup_s": settings.warmup_s, "calls": 1} for n in names}
        pool.rounds(first, rounds=1, seed=seed)  # the warm-up
        for n, answers in pool.rounds(latency, rounds=settings.rounds, seed=seed).items():
            timed[n]["latency"] = [ms for a in answers for ms in a["ms"]]
        pool.rounds({n: {**e2e[n], "warmup": settings.warmup, "warmup_s": settings.warmup_s, "calls": 1} for n in e2e},
                    rounds=1, seed=seed)
        for n, answers in pool.rounds(e2e, rounds=settings.rounds, seed=seed + 1).items():
            timed[n]["e2e"] = [ms for a in answers for ms in a["ms"]]
        for batch in (b for b in settings.batch_sizes if b > 1):
            key = f"batch{batch}"
            loaded = pool.load(key, {c.name: (c.artifact.path, c.deployment(threads, batch)) for c in candidates})
            for name, found in loaded.items():
                runtime_settings[name][f"batch {batch} (throughput)"] = found
            command = {n: {"op": "throughput", "key": key, "batch": batch, "warmup": settings.block_warmup,
                           "calls": settings.throughput_per_round} for n in names}
            for n, answers in pool.rounds(command, rounds=settings.throughput_rounds, seed=seed + batch).items():
                timed[n][batch] = [a["ips"] for a in answers]
    return timed, runtime_settings


class SpeedRun:
    """What ``measure_speed`` timed (``results``: {name: {threads: {metric: record}}}, ``applied``: the runtime
    settings), with the raw per-call timings kept, so a gate whose interval straddles its threshold can have its
    candidate and reference timed again (``remeasure``) and its speedup taken over all their rounds."""

    def __init__(self, candidates: list[Candidate], settings: SpeedSettings, seed: int, e2e_names: list[str]):
        self.candidates, self.settings, self.seed, self.e2e_names = candidates, settings, seed, e2e_names
        # threads -> name -> "latency"/"e2e" -> {launch: per-call ms}: 0 the first measurement, k its k-th re-measure
        self.launches: dict[int, dict[str, dict[str, dict[int, list[float]]]]] = {}
        self.results: dict[str, dict[int, dict]] = {c.name: {} for c in candidates}
        self.applied: dict[str, dict[int, dict]] = {c.name: {} for c in candidates}

    def measure(self, threads: int) -> None:
        timed, runtime_settings = _time_one_thread_count(self.candidates, self.settings, threads, self.seed,
                                                         self.e2e_names)
        self.launches[threads] = {n: {kind: {0: t[kind]} for kind in ("latency", "e2e") if kind in t}
                                  for n, t in timed.items()}
        names = {c.name for c in self.candidates}
        how = _how(self.settings)
        p50 = {n: percentiles(t["latency"])["p50"] for n, t in timed.items()}
        for c in self.candidates:
            self.applied[c.name][threads] = runtime_settings[c.name]
            p = percentiles(timed[c.name]["latency"])
            common = {"threads": threads, "batch": 1, "spread": {"iqr_ms": p["iqr"], "std_ms": p["std"]}, "how": how}
            record = {f"latency_ms_{q}": metric(f"latency_ms_{q}", p[q], p["n"], **common) for q in ("p50", "p90", "p99")}
            speedups = {"speedup_vs_baseline": "baseline", "speedup_vs_exported_teacher": reference_name(c, names),
                        "speedup_vs_teacher_int8": TEACHER_INT8 if TEACHER_INT8 in names else None}
            for metric_name, reference in speedups.items():
                if reference is not None:
                    interval = ratio_interval(timed[reference]["latency"], timed[c.name]["latency"],
                                              self.settings.per_round, seed=self.seed)
                    value = p50[reference] / p["p50"]
                    record[metric_name] = metric(metric_name, value, p["n"], threads=threads,
                                                 reference=reference, interval=holding(interval, value),
                                                 how="ratio of batch-1 p50s measured in this run; " + INTERVAL_HOW)
            if "e2e" in timed[c.name]:
                record.update(_e2e_records(timed[c.name]["e2e"], timed[self.candidates[0].name]["e2e"], self.settings,
                                           threads, how, self.seed))
            by_batch = {b: float(np.median(v)) for b, v in timed[c.name].items() if isinstance(b, int)}
            if by_batch:
                largest = max(by_batch)
                record["throughput_ips"] = metric(
                    "throughput_ips", by_batch[largest], self.settings.throughput_rounds, threads=threads, batch=largest,
                    by_batch={str(b): round(v, 2) for b, v in by_batch.items()},
                    how=f"static batch, throughput hint (OpenVINO: async requests over its streams); median of "
                        f"{self.settings.throughput_rounds} rounds x {self.settings.throughput_per_round} calls, "
                        f"isolated as above")
            self.results[c.name][threads] = record

    def remeasure(self, speedups: list[tuple[str, str]], threads: int, attempt: int) -> None:
        """Time again, together and as before (``rounds`` more rounds at batch 1, in fresh worker processes), each
        (candidate, speedup metric)'s candidate and reference; then take each such speedup over every launch the
        two were timed in together, its interval from a bootstrap over those launches and their rounds
        (``launches_ratio_interval``); every other figure of the report stays what the first measurement gave."""
        by_name = {c.name: c for c in self.candidates}
        records = self.results
        pairs = [(name, metric_name, records[name][threads][metric_name]["reference"]) for name, metric_name in speedups]
        names = list(dict.fromkeys(n for name, _, reference in pairs for n in (name, reference)))
        e2e = [n for n in names if any(m.startswith("e2e_") for name, m, ref in pairs if n in (name, ref))]
        once = self.settings.model_copy(update={"batch_sizes": [1]})
        timed, _ = _time_one_thread_count([by_name[n] for n in names], once, threads, self.seed + 1000 * attempt, e2e)
        launches = self.launches[threads]
        for n in names:
            for kind in ("latency", "e2e"):
                if kind in timed[n]:
                    launches.setdefault(n, {}).setdefault(kind, {})[attempt] = timed[n][kind]
        per_round = self.settings.per_round
        for name, metric_name, reference in pairs:
            kind = "e2e" if metric_name.startswith("e2e_") else "latency"
            ref_by, cand_by = launches[reference][kind], launches[name][kind]
            shared = sorted(set(ref_by) & set(cand_by))  # launches the two were timed in together
            paired = []
            for k in shared:
                rounds = min(len(ref_by[k]), len(cand_by[k])) // per_round
                paired.append((ref_by[k][:rounds * per_round], cand_by[k][:rounds * per_round]))
            ref_ms = [x for r, _ in paired for x in r]
            ms = [x for _, c in paired for x in c]
            value = float(np.median(ref_ms) / np.median(ms))
            interval = launches_ratio_interval(paired, per_round, seed=self.seed)
            old = records[name][threads][metric_name]
            first = old.get("first_measurement") or {"value": old["value"], "interval": old["interval"]}
            rounds = len(ms) // per_round
            records[name][threads][metric_name] = metric(
                metric_name, value, len(ms), threads=threads, reference=reference, interval=holding(interval, value),
                remeasured=attempt, rounds=rounds, launches=len(paired), first_measurement=first,
                how=f"ratio of batch-1 p50s over the {rounds} rounds of the {len(paired)} worker launches both were "
                    f"timed in together (timed again {attempt} time(s), {self.settings.rounds} rounds each, before a "
                    "gate decided); interval: a bootstrap over those launches, then their rounds (95%)")


def measure_speed(candidates: list[Candidate], settings: SpeedSettings, seed: int = 0,
                  progress: Callable[[str], None] = lambda message: None,
                  final_name: str | None = None) -> SpeedRun:
    """Time every candidate at each thread count (``SpeedRun.results``: {name: {threads: {metric: record}}},
    ``.applied``: {name: {threads: runtime settings}}); end to end for the baseline (the reference of every
    end-to-end speedup) and the candidates ``settings.e2e`` names."""
    e2e_names = list(dict.fromkeys([candidates[0].name, *chosen_names(settings.e2e, candidates, final_name)]))
    speed = SpeedRun(candidates, settings, seed, e2e_names)
    for threads in settings.threads:
        progress(f"speed at {threads} thread(s): {len(candidates)} worker processes")
        speed.measure(threads)
    return speed


def holding(interval: tuple[float, float], value: float, digits: int = 4) -> list[float]:
    """The interval as reported: widened to hold the central value (a percentile bootstrap over few rounds can
    leave it just outside) and rounded outwards, so rounding never moves a bound across the value."""
    scale = 10 ** digits
    low, high = min(interval[0], value), max(interval[1], value)
    return [math.floor(low * scale) / scale, math.ceil(high * scale) / scale]


def _e2e_records(ms: list[float], baseline_ms: list[float], settings: SpeedSettings, threads: int, how: str,
                 seed: int = 0) -> dict:
    e = percentiles(ms)
    baseline_p50 = percentiles(baseline_ms)["p50"]
    interval = ratio_interval(baseline_ms, ms, settings.per_round, seed=seed)
    record = {f"e2e_latency_ms_{q}": metric(f"e2e_latency_ms_{q}", e[q], e["n"], threads=threads, batch=1,
                                            spread={"iqr_ms": e["iqr"], "std_ms": e["std"]},
                                            caption=settings.e2e_caption, how=how + "; text encoder uncached")
              for q in ("p50", "p90")}
    record["e2e_speedup_vs_baseline"] = metric(
        "e2e_speedup_vs_baseline", baseline_p50 / e["p50"], e["n"], threads=threads, reference="baseline",
        interval=holding(interval, baseline_p50 / e["p50"]),
        how="ratio of end-to-end batch-1 p50s measured in this run (the teacher pipeline: MiniLM in torch + the "
            "teacher in torch); " + INTERVAL_HOW)
    return record


def measure_footprint(candidate: Candidate, threads: int) -> dict:
    """First-inference time and peak RSS from a fresh process, deployed for batch 1 latency."""
    found = probe(candidate.artifact.path, candidate.deployment(threads, 1))
    how = "one fresh process: import + load + compile + first batch-1 call, deployed as for latency"
    return {
        "first_inference_ms": metric("first_inference_ms", found["first_inference_ms"], 1, threads=threads, how=how),
        "peak_rss_mb": metric("peak_rss_mb", found["peak_rss_mb"], 1, threads=threads,
                              before_loading_mb=round(found["baseline_rss_mb"], 1),
                              torch_imported=found.get("torch_imported"),
                              how="VmHWM of that process after its first call (includes Python + imports)"),
    }


def generator_payload(artifact: Artifact) -> tuple[str, Path] | None:
    """(backend, file) of the generator an artifact deploys: the IR or ONNX file, or a bundle's generator."""
    if artifact.format == "openvino":
        return "openvino", artifact.file(OPENVINO_XML)
    if artifact.format == "onnx":
        return "onnxruntime", artifact.file(ONNX_FILE)
    if artifact.format == "bundle":
        generator = json.loads(artifact.file(BUNDLE_FILE).read_text())["generator"]
        return generator["backend"], artifact.path / generator["file"]
    return None


def runs_int8(artifact: Artifact) -> bool:
    """Whether the deployed generator holds INT8 quantisation (FakeQuantize in an IR, QuantizeLinear in ONNX)."""
    payload = generator_payload(artifact)
    if payload is None:
        return False
    marker = b"FakeQuantize" if payload[0] == "openvino" else b"QuantizeLinear"
    return marker in payload[1].read_bytes()


def _generator_backend(candidate: Candidate) -> str:
    """The runtime the candidate's generator runs in (a bundle's generator: OpenVINO or onnxruntime)."""
    payload = generator_payload(candidate.artifact)
    return payload[0] if payload is not None else candidate.backend


def measure_compute_rates(candidates: list[Candidate], metrics: dict[str, dict], threads: int, calls: int) -> dict:
    """{candidate name: {gmacs_per_s, peak_gmacs_per_s, share_of_peak}} from each one's MACs and batch-1 p50
    (``metrics[name]``) and the peak of its runtime and precision, timed here at ``threads``."""
    kinds = {c.name: peak_kind(_generator_backend(c), c.precision, runs_int8(c.artifact)) for c in candidates}
    wanted = [k for k in kinds.values() if k]
    peaks = measure_peaks(wanted, threads, calls) if wanted else {}
    found = {}
    for c in candidates:
        macs, p50 = metrics[c.name].get("macs"), metrics[c.name].get("latency_ms_p50")
        if macs is None or p50 is None:
            continue
        rate = macs["value"] / (p50["value"] / 1000.0) / 1e9
        found[c.name] = {"gmacs_per_s": metric("gmacs_per_s", rate, threads=threads, batch=1,
                                               how="MACs per image / batch-1 p50 of this run")}
        if kinds[c.name]:
            peak = peaks[kinds[c.name]]
            found[c.name]["peak_gmacs_per_s"] = metric("peak_gmacs_per_s", peak["gmacs_per_s"], peak["n"],
                                                       threads=threads, kind=kinds[c.name],
                                                       probe_ms_p50=round(peak["ms_p50"], 4), how=PEAK_HOW)
            found[c.name]["share_of_peak"] = metric("share_of_peak", rate / peak["gmacs_per_s"], threads=threads,
                                                    how="gmacs_per_s / peak_gmacs_per_s, same run")
    return found
