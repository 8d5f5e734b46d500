"""The config groups of the two distillation passes, ``distill`` and ``supernet``.

    student:    what is trained (distill only; ``students.py`` builds it)
    losses:     each loss's weight, and the options of the losses that have some (``train/losses.py``)
    schedule:   steps, batch, learning rate and its schedule, gradient clip, teacher batch reuse, caption pool
    validation: how often and on how many val inputs the student is scored, early stop, checkpoints
    text:       the shallow MiniLM the student reads (the bundle's; None: the full MiniLM)

A config that still uses a flat key of the old form is refused in one line naming the key's new place
(``MOVED``: "distill: `steps` moved to `schedule.steps`").
"""

from __future__ import annotations

import math
from typing import ClassVar, Literal

from pydantic import Field, model_validator

from ..config_errors import moved_key_error, refuse_moved_keys
from .base import PassConfig

# flat keys both passes had, and where they live now
_SHARED_MOVES = {
    **{key: f"schedule.{key}" for key in ("steps", "batch_size", "lr", "lr_schedule", "grad_clip", "teacher_reuse",
                                          "captions")},
    "adversarial_init": "losses.adversarial_init", "diversity_target": "losses.diversity_target",
    "validate_every": "validation.every", "validation_size": "validation.size",
    "checkpoint_every": "validation.checkpoint_every",
    "text_layers": "text.layers", "text_steps": "text.steps", "text_lr": "text.lr",
}
MOVED = {
    "distill": {
        **_SHARED_MOVES,
        **{key: f"student.{key}" for key in ("width", "convs_per_block", "separable", "attention", "token_layers",
                                             "init")},
        "student_kwargs": "student.kwargs", "patience": "validation.patience",
        **{key: f"losses.{key}" for key in ("feature_layers", "diversity_rows", "perceptual_px", "perceptual_maps",
                                            "perceptual_rows")},
    },
    "supernet": _SHARED_MOVES,
}


def refuse_old_keys(data: object, step: str) -> object:
    """For a ``model_validator(mode="before")``: ``data`` unchanged unless it uses a flat key that moved into a
    group (one line naming the new place); ``student: slim`` (a kind, not a group) included."""
    if isinstance(data, dict) and isinstance(data.get("student"), str):
        raise moved_key_error(f"`student: {data['student']}` moved to `student.kind` "
                              f"(student: {{kind: {data['student']}}})")
    return refuse_moved_keys(data, MOVED[step])


def _even(rows: int | None, name: str) -> None:
    if rows is not None and rows % 2:
        raise ValueError(f"{name} must be even (rows 2k and 2k+1 are one caption's two noises), got {rows}")


class StudentConfig(PassConfig):
    """What ``distill`` trains (see ``distill``'s docstring): the incoming generator, a slim DF-GAN, or a fresh
    instance of the user's factory."""

    kind: Literal["input", "slim", "factory"] = "input"
    # slim: every channel width times this; or one factor per stage (the stem's, then each block's output:
    # [0.5, 0.5, 0.25, 0.25]), e.g. wider at the cheap low resolutions where a caption's content is decided
    width: float | list[float] = 0.5
    convs_per_block: Literal[1, 2] | None = None  # slim: depth (None: the teacher's)
    separable: bool = False  # slim: depthwise-separable 3x3 convolutions
    # slim, a token-conditioned teacher: the cross-attention resolutions kept (a non-empty subset of the teacher's;
    # None: all) and how many of its token-transformer layers (its first ones; None: all). At batch 1 every
    # attention layer is a dozen small graph nodes, each with a fixed cost, not a few MACs
    attention: list[int] | None = None
    token_layers: int | None = Field(None, ge=0, le=64)
    init: Literal["random", "teacher"] = "random"  # slim: start from scratch or from the teacher's weights
    kwargs: dict = {}  # factory: merged into the user factory's kwargs, e.g. {width: 16}

    @model_validator(mode="after")
    def _options_match_the_kind(self) -> StudentConfig:
        factors = self.width if isinstance(self.width, list) else [self.width]
        if not factors or not all(0 < f <= 1 for f in factors):
            raise ValueError(f"width must be in (0, 1], or a list of such factors (one per stage), got {self.width}")
        if self.init == "teacher" and self.kind != "slim":
            raise ValueError(f"init: teacher applies to kind: slim only (this student's kind is {self.kind}); "
                             "remove init or set kind: slim")
        if self.kwargs and self.kind != "factory":
            raise ValueError(f"kwargs applies to kind: factory only (this student's kind is {self.kind}); remove "
                             "it or set kind: factory")
        return self


class LossesConfig(PassConfig):
    """The weights of the losses both passes have, and their options."""

    pixel: float = Field(1.0, ge=0, le=1e6)
    feature: float = Field(0.0, ge=0, le=1e6)
    adversarial: float = Field(0.0, ge=0, le=1e6)
    diversity: float = Field(0.0, ge=0, le=1e6)
    # the adversarial term's discriminator: a new one (fresh), or the teacher's own (teacher: it must ship one,
    # discriminator.safetensors beside its weights), which already knows real images from generated ones
    adversarial_init: Literal["fresh", "teacher"] = "fresh"
    diversity_target: float = Field(1.0, gt=0, le=10)  # the diversity term asks for this share of the teacher's spread

    TERMS: ClassVar[tuple[str, ...]] = ("pixel", "feature", "diversity", "adversarial")

    def weights(self) -> dict[str, float]:
        """Every loss's weight, by the loss's name."""
        return {name: getattr(self, name) for name in self.TERMS}


class DistillLosses(LossesConfig):
    """``distill``'s losses: those of ``LossesConfig``, the two perceptual ones, and the layers the feature
    term compares."""

    TERMS: ClassVar[tuple[str, ...]] = ("pixel", "perceptual", "perceptual_diversity", "feature", "diversity",
                                        "adversarial")
    perceptual: float = Field(0.0, ge=0, le=1e6)
    perceptual_diversity: float = Field(0.0, ge=0, le=1e6)
    feature_layers: list[str] = ["blocks.0", "blocks.1"]  # present in both models, drawing feature maps
    diversity_rows: int | None = Field(None, ge=2, le=4096)  # the diversity terms pair a batch's first rows only
    perceptual_px: int = Field(128, ge=32, le=512)  # the side Lite0 sees the images at (upsampled)
    perceptual_maps: list[int] | None = None  # Lite0 blocks (0-15) whose spatial maps are compared; None: pooled
    perceptual_rows: int | None = Field(None, ge=2, le=4096)  # the perceptual terms see a batch's first rows only

    @model_validator(mode="after")
    def _rows_and_maps(self) -> DistillLosses:
        if self.perceptual_maps is not None and not (self.perceptual_maps and set(self.perceptual_maps) <= set(range(16))):
            raise ValueError(f"perceptual_maps names EfficientNet-Lite0 blocks 0-15 (at least one), got "
                             f"{self.perceptual_maps}")
        _even(self.diversity_rows, "diversity_rows")
        _even(self.perceptual_rows, "perceptual_rows")
        return self


class ScheduleConfig(PassConfig):
    """Adam at ``lr``, constant or on a cosine to 0 by the last step; the teacher draws a fresh batch every
    ``teacher_reuse`` steps (the steps between train on one of the last ``teacher_reuse`` batches again)."""

    steps: int = Field(2000, ge=1, le=10_000_000)
    batch_size: int = Field(32, ge=2, le=4096)
    lr: float = Field(5e-4, gt=0, le=1.0)
    lr_schedule: Literal["constant", "cosine"] = "constant"  # cosine: from lr down to 0 at the last step
    grad_clip: float | None = Field(None, gt=0, le=1e6)  # clip the student's gradient norm (None: no clipping)
    teacher_reuse: int = Field(1, ge=1, le=1000)  # the teacher's forward is most of a step's cost
    captions: int = Field(4096, ge=8, le=1_000_000)  # distinct train captions drawn from

    def lr_factor(self, step: int) -> float:
        """The learning rate at ``step`` over ``lr`` (a pure function of the step: resuming needs no state)."""
        if self.lr_schedule == "cosine":
            return 0.5 * (1 + math.cos(math.pi * min(step, self.steps) / self.steps))
        return 1.0


class ValidationConfig(PassConfig):
    """Every ``every`` steps the student is scored on ``size`` fixed val-split inputs; a checkpoint every
    ``checkpoint_every`` steps."""

    every: int = Field(250, ge=1, le=10_000_000)
    size: int = Field(128, ge=8, le=100_000)
    checkpoint_every: int = Field(250, ge=1, le=10_000_000)


class DistillValidation(ValidationConfig):
    patience: int = Field(4, ge=1, le=1000)  # stop after this many checks without a better score


class TextConfig(PassConfig):
    """The student reads the caption vectors (and token states) of MiniLM's first ``layers`` layers, distilled
    ``steps`` steps at ``lr`` as the bundle step distils them (one cached encoder: give the bundle the same
    ``text_layers``, ``text_steps`` and ``text_lr``); the teacher reads the full MiniLM's (None: both do)."""

    layers: int | None = Field(None, ge=1, le=5)
    steps: int = Field(1500, ge=1, le=1_000_000)
    lr: float = Field(1e-3, gt=0, le=1.0)
