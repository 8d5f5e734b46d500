"""The recipe's ``bench:`` section: which steps to measure and how (light imports: recipes load it)."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field


class SpeedSettings(BaseModel):
    """How speed is measured; the defaults are what README's figures use."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    threads: list[Annotated[int, Field(ge=1, le=1024)]] = Field([1, 2], min_length=1, max_length=16)
    batch_sizes: list[Annotated[int, Field(ge=1, le=4096)]] = Field([1, 8, 32], min_length=1, max_length=16)
    warmup: int = Field(5, ge=0, le=10_000)
    rounds: int = Field(6, ge=1, le=10_000)
    per_round: int = Field(10, ge=1, le=10_000)
    settle_s: float = Field(0.0, ge=0, le=10)  # optional idle time before each timed block
    e2e_caption: str = Field("red apple", min_length=1)
    probe: bool = True  # first-inference time and peak RSS (one fresh process per candidate)


class QualitySettings(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    n: int | None = Field(None, ge=1, le=1_000_000)  # at most this many eval captions (default: the whole eval split)
    seed: int = Field(0, ge=0, le=2**32 - 1)
    batch_size: int = Field(32, ge=1, le=4096)


class BenchSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    candidates: list[str] | None = None  # step names ("distill", "quantize_nncf", "final"); default: every step but sanitize
    speed: SpeedSettings = SpeedSettings()
    quality: QualitySettings = QualitySettings()
    sample_captions: list[str] | None = Field(None, min_length=1)
