"""Training configuration (YAML), validated strictly before any compute."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..config_errors import validation_message
from ..data.config import DataConfig
from ..errors import ConfigError
from ..models.dfgan import GeneratorConfig


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DiscriminatorConfig(_Strict):
    ndf: int = Field(32, ge=1)


class TrainConfig(_Strict):
    """Everything a training run depends on; the run folder keeps a resolved copy."""

    name: str
    data: DataConfig = DataConfig()
    generator: GeneratorConfig = GeneratorConfig()
    discriminator: DiscriminatorConfig = DiscriminatorConfig()
    seed: int = 0
    steps: int = Field(10_000, ge=1)
    batch_size: int = Field(64, ge=2)
    lr_g: float = Field(1e-4, gt=0)
    lr_d: float = Field(4e-4, gt=0)
    betas: tuple[float, float] = (0.0, 0.9)
    gp_weight: float = 2.0  # matching-aware gradient penalty: weight * mean(||grad||^gp_power)
    gp_power: float = 6.0
    gp_every: int = Field(4, ge=1)  # lazy regularisation: every k steps, weight scaled by k
    recon_weight: float = Field(0.0, ge=0)  # paired MSE between G(z, caption) and the caption's real image
    recon_until: int | None = Field(None, ge=1)  # anneal recon_weight linearly to recon_floor at this step (None: constant)
    recon_floor: float = Field(0.0, ge=0)  # the weight the anneal ends at and keeps (0: the term is dropped)
    # mode seeking (DSGAN, Yang et al. 2019): each caption of a G batch is drawn with two noises and G is
    # rewarded for making them differ: weight / (mean|G(z1)-G(z2)| / mean|z1-z2| + eps)
    diversity_weight: float = Field(0.0, ge=0)
    ema_decay: float = Field(0.999, ge=0, lt=1)
    threads: int | None = None  # torch intra-op threads; None = torch's default
    # bfloat16 autocast: auto = where the hardware computes bf16 natively (AVX512-BF16 / AMX / a bf16 GPU), else
    # fp32 (emulated bf16 is 26-47x slower); true / false force either (compresskit.hardware)
    bf16: bool | Literal["auto"] = "auto"
    channels_last: bool = True
    log_every: int = Field(25, ge=1)
    sample_every: int = Field(1000, ge=1)
    checkpoint_every: int = Field(500, ge=1)
    keep_checkpoints: int = Field(2, ge=1)
    max_loss: float = 1e4  # divergence guard: |loss| above this (or non-finite) stops training
    min_sample_spread: float = Field(1e-5, ge=0)  # collapse guard: mean per-pixel std across a batch
    sample_captions: list[str] = ["red apple", "cat face", "sun", "flag: Japan"]
    sample_seeds: int = Field(4, ge=1)

    def resume_conflicts(self, other: TrainConfig) -> list[str]:
        """Keys whose change makes an old checkpoint unusable for resuming (architecture, data)."""
        keys = ("data", "generator", "discriminator", "batch_size", "seed")
        return [k for k in keys if getattr(self, k) != getattr(other, k)]

    def recon_weight_at(self, step: int) -> float:
        """The reconstruction weight of ``step`` (linear anneal to ``recon_floor`` at ``recon_until``, if set)."""
        if self.recon_until is None:
            return self.recon_weight
        left = max(0.0, 1.0 - step / self.recon_until)
        return self.recon_floor + (self.recon_weight - self.recon_floor) * left


def load_train_config(path: str | Path) -> TrainConfig:
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text("utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}; give the path of a training YAML") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path} is not UTF-8 text; give the path of a training YAML") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path} must hold a mapping of keys (name, data, generator, ...)")
    raw.setdefault("name", path.stem)
    try:
        return TrainConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(validation_message(exc, TrainConfig, str(path))) from None
