"""The recipe's ``bench:`` section: which steps to measure and how (light imports: recipes load it)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field


class SpeedSettings(BaseModel):
    """How speed is measured (``bench.measure``); the defaults are what README's figures use."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    threads: list[Annotated[int, Field(ge=1, le=1024)]] = Field([1, 2], min_length=1, max_length=16)
    batch_sizes: list[Annotated[int, Field(ge=1, le=4096)]] = Field([1, 8, 32], min_length=1, max_length=16)
    warmup: int = Field(20, ge=0, le=10_000)  # calls before the first timed round ...
    warmup_s: float = Field(1.0, ge=0, le=600)  # ... and for at least this long (a fresh model starts slow)
    rounds: int = Field(10, ge=1, le=10_000)
    per_round: int = Field(20, ge=1, le=10_000)  # timed batch-1 calls per round
    block_warmup: int = Field(2, ge=0, le=1_000)  # untimed calls before each timed block (wakes the pools) ...
    block_warmup_s: float = Field(0.05, ge=0, le=60)  # ... for at least this long (refills the caches)
    # a speed gate whose 95% interval straddles its threshold: its candidate and reference are timed again
    # (``rounds`` more rounds, together) up to this many times, until the interval clears; then the central value
    # decides, and the gate table says marginal
    remeasure: int = Field(2, ge=0, le=20)
    # every speed gate's candidate and reference are timed in at least this many worker launches (the first
    # measurement and re-measures), straddling or not: two processes can differ by more than one's rounds vary
    min_launches: int = Field(1, ge=1, le=21)
    throughput_rounds: int = Field(5, ge=1, le=10_000)
    throughput_per_round: int = Field(4, ge=1, le=10_000)  # calls per round at each larger batch
    e2e_caption: str = Field("red apple", min_length=1)
    # end-to-end timing (caption -> image) for every candidate, or for the baseline and the named ones only
    # (step names, "final", references): with MiniLM in torch it is ~6 ms of every unbundled candidate's figure
    e2e: bool | list[str] = True
    # first-inference time and peak RSS, one fresh process per candidate: every candidate, or the named ones
    probe: bool | list[str] = True
    # effective GMAC/s beside the runtime's measured peak at the same precision (bench.peak; headline threads)
    peak: bool = True
    peak_calls: int = Field(60, ge=1, le=10_000)  # timed calls of the peak probe, each kind in its own process
    # the teacher exported to ONNX / OpenVINO fp32 / NNCF INT8, measured as references (bench.baselines)
    exported_teacher: bool = True
    # OpenVINO candidates (step names, "final", or references like "teacher_openvino") also measured with
    # bf16 inference precision, each as its own candidate "NAME@bf16" with its own quality
    bf16: list[str] = Field([], max_length=64)
    # cross-check the batch-1 p50 with OpenVINO's benchmark_app (headline threads): of every OpenVINO candidate
    # (true), or of the named ones (step names, "final", references like "teacher_int8")
    crosscheck: bool | list[str] = False
    crosscheck_seconds: int = Field(5, ge=1, le=600)  # per benchmark_app run (two per candidate)


class QualitySettings(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    n: int | None = Field(None, ge=1, le=1_000_000)  # at most this many captions (default: the whole split)
    split: Literal["eval", "val"] = "eval"  # report and gate on eval; tune a recipe on val (--split val)
    diversity_captions: int = Field(100, ge=2, le=10_000)  # captions of the diversity protocol (8 samples each)
    seed: int = Field(0, ge=0, le=2**32 - 1)
    batch_size: int = Field(32, ge=1, le=4096)
    # score the baseline and these candidates only (step names, "final", references); default: every one. An fp32
    # export draws what its parent draws (parity checked at export), so a recipe may leave it out
    candidates: list[str] | None = Field(None, max_length=64)


class BenchSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    candidates: list[str] | None = None  # step names ("distill", "quantize_nncf", "final"); default: every step but sanitize
    speed: SpeedSettings = SpeedSettings()
    quality: QualitySettings = QualitySettings()
    sample_captions: list[str] | None = Field(None, min_length=1)
