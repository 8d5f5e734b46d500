"""``distill``: teach a smaller generator to reproduce the teacher (the recipe's input generator).

Student, for any generator (the model contract), one of:

* ``student: input``: the incoming artifact itself (e.g. a pruned generator, ours or a user's);
* ``student: factory``: a fresh instance from the user's own factory with ``student_kwargs`` merged into
  its kwargs (``{width: 16}``): for a user generator whose factory takes width arguments;
* ``student: slim``: the project's own DF-GAN, slim: the teacher's widths times ``width`` when the teacher is
  a DF-GAN, else DF-GAN's default widths times ``width`` fitted to the teacher's io spec (z, text, image
  size); ``width`` is one factor or one per stage (stem, then each block's output); optionally one conv per
  block (``convs_per_block: 1``) and depthwise-separable convs (``separable``); of a token-conditioned teacher,
  fewer cross-attention layers (``attention``: the resolutions kept) and token-transformer layers
  (``token_layers``: the first ones kept).
  ``init: teacher`` starts it from the teacher's own weights (a DF-GAN teacher): the caption MLP, every fusion
  MLP's hidden layer and the token path of a token-conditioned teacher (token norm and transformer, attention
  keys, values and position queries) are copied whole (their widths are not scaled; with no token transformer
  kept, each key and value starts as the teacher's composed with its token input projection), and each channel
  dimension keeps the teacher's channels that are most active on the validation inputs (stem, shortcuts, the
  RGB head, fusion outputs, each cross-attention's output; a one-conv block's conv from the teacher's first
  conv); the feature adapters start as that selection. ``init: random`` (default) starts from scratch.

Data-free by default: each step
draws noise and train-split captions, and the teacher's output is the target. ``text_layers: K``: the student
reads what the bundle's shallower text encoder will give it (MiniLM's first K layers, distilled as the bundle step
distils them: one cached encoder), the teacher the full MiniLM's vectors. Losses (weights in config):

* ``pixel``: L1 between student and teacher images;
* ``perceptual``: L1 between their pooled EfficientNet-Lite0 features at ``perceptual_px`` (costly: 128 px by
  default); or, with ``perceptual_maps`` (Lite0 block indices), LPIPS-style: the squared difference of the
  spatial feature maps after those blocks, each position's channel vector scaled to unit length first. On the
  first ``perceptual_rows`` rows of each batch (None: all);
* ``perceptual_diversity``: the ``diversity`` term below measured with the perceptual distance, on the same rows
  (the diversity metric compares samples by Lite0 features; pixel spread can hold while that falls);
* ``feature``: MSE between named intermediate layers (``feature_layers``, present in both models and
  drawing feature maps), the student's through learnable 1x1 adapters;
* ``adversarial``: hinge loss against a discriminator that learns teacher images (real) from student
  images (fake) for the same caption; new (``adversarial_init: fresh``) or started from the teacher's own
  (``teacher``: the one it was trained against, shipped beside its weights);
* ``diversity``: keeps the teacher's variety across noise. Rows 2k and 2k+1 of every batch share a caption
  (two noises); the term is ``max(0, 1 - spread(student) / (diversity_target * spread(teacher)))`` with spread
  the mean |image(z1) - image(z2)| of those pairs: zero while the student varies at least ``diversity_target``
  (default 1) times as much as the teacher, so it only resists the collapse to a per-caption mean that pixel
  regression under limited capacity drifts to. A target under 1 asks for that share of the teacher's variety
  only (any weight drives the ratio to its target: the weight sets what the term may cost the other losses).
  ``diversity_rows: 2m`` pairs only the first 2m rows of each batch (per process) and the term reads those; the
  other rows draw captions of their own, so a batch covers more captions (pairing every row halves them).

Optimisation: Adam at ``lr``, constant or on a cosine from ``lr`` to 0 by the last step (``lr_schedule``), the
gradient norm optionally clipped (``grad_clip``). The teacher's forward pass costs most of a step (a 21x
smaller student trains in a third of the teacher's inference time here), so ``teacher_reuse: k`` draws a
fresh teacher batch every k steps and trains the steps between on one of the last k batches again (their
images and features kept): ~k times fewer teacher passes for the same number of student steps.

Checkpoints (student, adapters, discriminator, optimizers, step) go to the step's scratch folder every
``checkpoint_every`` steps, so a killed run resumes there (with ``teacher_reuse`` > 1 the kept batches are not
checkpointed: a resumed run draws afresh, so it ends near, not exactly at, where an uninterrupted one does). Under ``torchrun`` (``compresskit run`` with
``--nproc-per-node``) each step's global batch of ``batch_size`` noise/caption pairs is drawn from
``(seed, step)`` and split over the ranks; the student, its adapters and the discriminator train under
DistributedDataParallel; rank 0 validates, checkpoints and writes the student.

Validation (choices are made on the validation split, never on eval): every ``validate_every`` steps the
student draws ``validation_size`` fixed inputs built from *val*-split captions, again in pairs of two noises
per caption; the score is the pixel L1 to the teacher plus ``losses.diversity`` times the same spread
shortfall (against ``diversity_target``) as in training. Training stops early after ``patience`` checks
without a better score, and the best student is the one written.
"""

from __future__ import annotations

import copy
import json
import math
import time
from pathlib import Path
from typing import Literal

import torch
from pydantic import Field, model_validator
from safetensors.torch import load_file, save_file
from torch import nn
from torch.nn import functional as F

from ..artifact import Artifact, Format
from ..errors import PassFailed
from ..hardware import resolved_bf16
from ..models import DFDiscriminator, count_params
from ..models.contract import io_spec, layer_widths
from ..models.inputs import as_tensors, input_names, text_inputs
from ..models.io import load_model, save_model
from ..models.stats import macs_per_image
from ..train.kit import (Checkpointer, EarlyStop, adam, autocast, current, hinge_d_loss, hinge_g_loss, step_rng,
                         training_precision)
from .base import Pass, PassConfig, PassContext, PassMetric, PassResult
from .students import Taps, discriminator_for, inherit_from_teacher, make_student


def _perceived(lite0: nn.Module, images: torch.Tensor, maps: list[int] | None) -> list[torch.Tensor]:
    """What the perceptual terms compare of images in [-1, 1]: Lite0's pooled features, or the spatial maps
    after the blocks ``maps`` with each position's channel vector at unit length."""
    x = (images.clamp(-1, 1) + 1) / 2
    return [lite0(x)] if maps is None else [F.normalize(m.float(), dim=1) for m in lite0.maps(x, maps)]


def _perceptual_distance(a: list[torch.Tensor], b: list[torch.Tensor]) -> torch.Tensor:
    """Mean over rows of the distance between two ``_perceived`` lists: L1 of pooled features, or the squared
    distance of unit channel vectors summed over channels and averaged over positions (LPIPS without its
    learned channel weights), averaged over the maps."""
    return sum((x.float() - y.float()).abs().mean() if x.dim() == 2 else (x.float() - y.float()).pow(2).sum(1).mean()
               for x, y in zip(a, b)) / len(a)


class LossWeights(PassConfig):
    pixel: float = Field(1.0, ge=0, le=1e6)
    perceptual: float = Field(0.0, ge=0, le=1e6)
    perceptual_diversity: float = Field(0.0, ge=0, le=1e6)
    feature: float = Field(0.0, ge=0, le=1e6)
    adversarial: float = Field(0.0, ge=0, le=1e6)
    diversity: float = Field(0.0, ge=0, le=1e6)


class DistillConfig(PassConfig):
    student: Literal["input", "slim", "factory"] = "input"
    # slim: every channel width times this; or one factor per stage (the stem's, then each block's output:
    # [0.5, 0.5, 0.25, 0.25]), e.g. wider at the cheap low resolutions where a caption's content is decided
    width: float | list[float] = 0.5
    convs_per_block: Literal[1, 2] | None = None  # slim: depth (None: the teacher's)
    separable: bool = False  # slim: depthwise-separable 3x3 convolutions
    # slim, a token-conditioned teacher: the cross-attention resolutions the student keeps (a non-empty subset of
    # the teacher's; None: all) and how many of the teacher's token-transformer layers (its first ones; None: all).
    # At batch 1 every attention layer is a dozen small graph nodes, each with a fixed cost, not a few MACs
    attention: list[int] | None = None
    token_layers: int | None = Field(None, ge=0, le=64)
    init: Literal["random", "teacher"] = "random"  # slim: start from scratch or from the teacher's weights
    student_kwargs: dict = {}  # factory: merged into the user factory's kwargs, e.g. {width: 16}
    steps: int = Field(2000, ge=1, le=10_000_000)
    batch_size: int = Field(32, ge=2, le=4096)
    lr: float = Field(5e-4, gt=0, le=1.0)
    lr_schedule: Literal["constant", "cosine"] = "constant"  # cosine: from lr down to 0 at the last step
    grad_clip: float | None = Field(None, gt=0, le=1e6)  # clip the student's gradient norm (None: no clipping)
    # the teacher draws a fresh batch every teacher_reuse steps; the steps between train on one of the last
    # teacher_reuse batches again (its images and features kept): the teacher's forward is most of a step's cost
    teacher_reuse: int = Field(1, ge=1, le=1000)
    losses: LossWeights = LossWeights()
    # the adversarial term's discriminator: a new one (fresh), or the teacher's own (teacher: it must ship one,
    # discriminator.safetensors beside its weights), which already knows real images from generated ones
    adversarial_init: Literal["fresh", "teacher"] = "fresh"
    feature_layers: list[str] = ["blocks.0", "blocks.1"]
    diversity_target: float = Field(1.0, gt=0, le=10)  # losses.diversity asks for this share of the teacher's spread
    diversity_rows: int | None = Field(None, ge=2, le=4096)  # the diversity terms pair a batch's first rows only
    perceptual_px: int = Field(128, ge=32, le=512)  # the side Lite0 sees the images at (upsampled)
    perceptual_maps: list[int] | None = None  # Lite0 blocks (0-15) whose spatial maps are compared; None: pooled
    perceptual_rows: int | None = Field(None, ge=2, le=4096)  # the perceptual terms see a batch's first rows only
    captions: int = Field(4096, ge=8, le=1_000_000)  # distinct train captions drawn from
    validate_every: int = Field(250, ge=1, le=10_000_000)
    validation_size: int = Field(128, ge=8, le=100_000)
    patience: int = Field(4, ge=1, le=1000)
    checkpoint_every: int = Field(250, ge=1, le=10_000_000)
    # bfloat16 autocast: auto = where the hardware computes bf16 natively (AVX512-BF16 / AMX / a bf16 GPU), else fp32
    # (emulated bf16 is 26-47x slower); true / false force either (compresskit.hardware)
    bf16: bool | Literal["auto"] = "auto"
    # the teacher, the student and their convolutions in channels-last memory: oneDNN's faster layout for these
    # small convs (a step of the edge recipe's shape 1.2-1.4x faster on an AVX512-BF16 EPYC, fp32 and bf16)
    channels_last: bool = True
    # the student reads the caption vectors (and token states) of MiniLM's first text_layers layers, distilled
    # as the bundle step distils them (one cached encoder: give the bundle the same text_layers, text_steps and
    # text_lr), while the teacher reads the full MiniLM's: the student learns the teacher's images from what the
    # deployed text encoder will give it (None: both read the full MiniLM)
    text_layers: int | None = Field(None, ge=1, le=5)
    text_steps: int = Field(1500, ge=1, le=1_000_000)
    text_lr: float = Field(1e-3, gt=0, le=1.0)

    @model_validator(mode="after")
    def _options_match_the_student(self) -> DistillConfig:
        factors = self.width if isinstance(self.width, list) else [self.width]
        if not factors or not all(0 < f <= 1 for f in factors):
            raise ValueError(f"width must be in (0, 1], or a list of such factors (one per stage), got {self.width}")
        if self.perceptual_maps is not None and not (self.perceptual_maps and set(self.perceptual_maps) <= set(range(16))):
            raise ValueError(f"perceptual_maps names EfficientNet-Lite0 blocks 0-15 (at least one), got "
                             f"{self.perceptual_maps}")
        if self.diversity_rows is not None and self.diversity_rows % 2:
            raise ValueError(f"diversity_rows must be even (rows 2k and 2k+1 are one caption's two noises), got "
                             f"{self.diversity_rows}")
        if self.perceptual_rows is not None and self.perceptual_rows % 2:
            raise ValueError(f"perceptual_rows must be even (rows 2k and 2k+1 are one caption's two noises), got "
                             f"{self.perceptual_rows}")
        if self.init == "teacher" and self.student != "slim":
            raise ValueError(f"init: teacher applies to student: slim only (this step's student is {self.student}); "
                             "remove init or set student: slim")
        if self.student_kwargs and self.student != "factory":
            raise ValueError(f"student_kwargs applies to student: factory only (this step's student is "
                             f"{self.student}); remove it or set student: factory")
        return self


def _lr_factor(cfg: DistillConfig, step: int) -> float:
    """The learning rate at ``step`` over ``cfg.lr`` (a pure function of the step: resuming needs no state)."""
    if cfg.lr_schedule == "cosine":
        return 0.5 * (1 + math.cos(math.pi * min(step, cfg.steps) / cfg.steps))
    return 1.0


def pair_spread(images: torch.Tensor) -> torch.Tensor:
    """Mean |image(2k) - image(2k+1)|: how far two noises of one caption land apart (rows 2k, 2k+1 share one)."""
    n = len(images) // 2
    return (images[0:2 * n:2] - images[1:2 * n:2]).abs().mean()


class _Trainable(nn.Module):
    """The student and its feature adapters as one module, so DDP syncs both (the adapters are applied to
    the student's tapped features outside ``forward``; their gradients still flow into these parameters)."""

    def __init__(self, student: nn.Module, adapters: nn.ModuleDict):
        super().__init__()
        self.student, self.adapters = student, adapters

    def forward(self, z: torch.Tensor, *caption: torch.Tensor) -> torch.Tensor:
        return self.student(z, *caption)


def _caption_args(model: nn.Module, cond: dict[str, torch.Tensor], rows=slice(None)) -> tuple[torch.Tensor, ...]:
    """The caption inputs ``model`` reads (its io spec's names after ``z``), rows ``rows`` of each."""
    return tuple(cond[name][rows] for name in input_names(io_spec(model))[1:])


class _DiscriminatorLoss(nn.Module):
    """Hinge loss of the distillation discriminator (teacher images real, student images fake), one forward."""

    def __init__(self, disc: DFDiscriminator):
        super().__init__()
        self.disc = disc

    def forward(self, target: torch.Tensor, fake: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        judge = lambda images: self.disc.judge_pair(self.disc.features(images), text)  # noqa: E731
        return hinge_d_loss(judge(target), judge(fake))


def _feature_widths(model: nn.Module, names: list[str], example: tuple, which: str) -> dict[str, int]:
    """Channels of each named layer's output (a feature map), checked to exist: one line naming the fix."""
    modules = dict(model.named_modules())
    missing = [n for n in names if n not in modules]
    if missing:
        raise PassFailed(f"distill: the {which} has no layer {missing[0]!r} for the feature loss; set feature_layers "
                         f"to layers both models have (e.g. {', '.join(list(modules)[1:5])}) or losses.feature: 0")
    probe = copy.deepcopy(model)
    taps = Taps(probe, names)
    with torch.no_grad():
        probe(*example)
    bad = [n for n in names if not (isinstance(taps.out.get(n), torch.Tensor) and taps.out[n].dim() == 4)]
    if bad:
        raise PassFailed(f"distill: {which} layer {bad[0]!r} does not output a feature map (N, C, H, W); "
                         "choose convolutional layers for feature_layers")
    return {n: taps.out[n].shape[1] for n in names}


class Distill(Pass):
    name = "distill"
    about = "teacher -> student distillation (pixel L1, Lite0 perceptual, feature MSE via 1x1 adapters, hinge)"
    Config = DistillConfig
    accepts = (Format.TORCH,)
    produces = Format.TORCH
    needs = ("teacher", "captions")
    metrics = {"val_l1_best": PassMetric("", "lower", "mean |student - teacher| pixel on the validation inputs"),
               "val_spread_ratio": PassMetric("", "higher", "the chosen student's spread across noise / the "
                                                            "teacher's, on the validation pairs"),
               "params_ratio": PassMetric("", "lower", "student parameters / teacher parameters"),
               "macs_ratio": PassMetric("", "lower", "student MACs per image / teacher MACs per image")}
    version = "5"  # 2: any generator (the model contract); factory students; 3: val-split validation, diversity;
    # 4: diversity_target, diversity_rows; 5: bf16 auto (hardware-decided), channels_last
    distributed = True

    @classmethod
    def reads_teacher_discriminator(cls, config: DistillConfig) -> bool:
        return bool(config.losses.adversarial) and config.adversarial_init == "teacher"

    @classmethod
    def machine_key(cls, config: DistillConfig) -> dict:
        return {"bf16": resolved_bf16(config.bf16)}  # bf16 and fp32 train different students

    def run(self, src: Artifact, out_dir: Path, ctx: PassContext) -> PassResult:
        from ..text import TextEncoder

        cfg, w = self.config, self.config.losses
        world = current()
        world.per_rank_batch(cfg.batch_size, "distill batch_size")
        if ctx.threads:
            torch.set_num_threads(ctx.threads)
        torch.manual_seed(ctx.seed)
        device = world.device  # this rank's GPU when there is one, else the CPU
        precision = training_precision(cfg.bf16, device.type)  # bf16 only where the hardware computes it
        if world.is_main and not precision.warned:  # a warning was printed already
            ctx.log(f"distill: {precision.note}")
        layout = torch.channels_last if cfg.channels_last else torch.contiguous_format
        teacher = load_model(ctx.teacher.path).eval().requires_grad_(False)
        student = make_student(cfg, src, teacher)
        teacher, student = teacher.to(device), student.to(device).train()
        # one memory layout for both before anything is compared: a student that starts as the teacher draws its images
        teacher, student = teacher.to(memory_format=layout), student.to(memory_format=layout)
        # every caption input the teacher reads (pooled vector; token states for a token-conditioned teacher)
        captions = ctx.captions(cfg.captions)
        pool = as_tensors(text_inputs(io_spec(teacher), captions, TextEncoder()), device)
        pool_size = len(pool["text"])
        z_dim = teacher.config.z_dim
        val_gen = torch.Generator().manual_seed(ctx.seed + 99)
        val_z = torch.randn(cfg.validation_size, z_dim, generator=val_gen).to(device)
        val_captions = ctx.captions((cfg.validation_size + 1) // 2, seed=ctx.seed + 99, split="val")
        val_captions = [c for caption in val_captions for c in (caption, caption)][:cfg.validation_size]
        val_cond = as_tensors(text_inputs(io_spec(teacher), val_captions, TextEncoder()), device)
        s_pool, s_val_cond = pool, val_cond  # what the student reads: the same, or the shallow encoder's
        if cfg.text_layers:
            from ..text.shallow import encoder_onnx_inputs
            from .bundle import shallow_encoder

            encoder = shallow_encoder(ctx, cfg.text_layers, cfg.text_steps, cfg.text_lr, step="distill")
            s_pool = as_tensors(encoder_onnx_inputs(encoder, io_spec(teacher), captions), device)
            s_val_cond = as_tensors(encoder_onnx_inputs(encoder, io_spec(teacher), val_captions), device)
        # rank 0 alone validates (no grad: frozen)
        val_target = teacher(val_z, *_caption_args(teacher, val_cond)) if world.is_main else None

        kept = {}
        if cfg.init == "teacher":
            kept = inherit_from_teacher(student, teacher, (val_z, *_caption_args(teacher, val_cond)))
        adapters = nn.ModuleDict()
        if w.feature:
            examples = {which: (val_z[:2], *_caption_args(model, val_cond, slice(0, 2)))
                        for which, model in (("student", student), ("teacher", teacher))}
            s_width = _feature_widths(student, cfg.feature_layers, examples["student"], "student")
            t_width = _feature_widths(teacher, cfg.feature_layers, examples["teacher"], "teacher")
            adapters = nn.ModuleDict({n.replace(".", "_"): nn.Conv2d(s_width[n], t_width[n], 1) for n in cfg.feature_layers})
            for n in set(cfg.feature_layers) & set(kept):  # inherited channels: the adapter starts as the selection
                adapter = adapters[n.replace(".", "_")]
                with torch.no_grad():
                    adapter.weight.zero_()
                    adapter.bias.zero_()
                    adapter.weight[kept[n], torch.arange(len(kept[n])), 0, 0] = 1.0
        adapters = adapters.to(device, memory_format=layout)
        t_taps, s_taps = (Taps(teacher, cfg.feature_layers), Taps(student, cfg.feature_layers)) if w.feature else (None, None)
        disc = (discriminator_for("distill", cfg.adversarial_init, ctx.teacher.path, teacher.config)
                .to(device, memory_format=layout) if w.adversarial else None)
        lite0 = None
        if w.perceptual or w.perceptual_diversity:
            from ..metrics.features import lite0 as load_lite0

            lite0 = load_lite0(cfg.perceptual_px).to(device)
        rows = cfg.perceptual_rows  # None: every row of the batch
        per_rank = cfg.batch_size // world.size
        paired = min(cfg.diversity_rows or per_rank, per_rank) // 2 * 2  # rows 2k, 2k+1 < paired: one caption
        opt = adam([*student.parameters(), *adapters.parameters()], lr=cfg.lr, betas=(0.5, 0.999))
        opt_d = adam(disc.parameters(), lr=cfg.lr * 2, betas=(0.0, 0.9)) if disc else None
        checkpointer = Checkpointer({"student": student, "adapters": adapters, **({"disc": disc} if disc else {})},
                                    {"opt": opt, **({"opt_d": opt_d} if opt_d else {})})
        trainable = world.wrap(_Trainable(student, adapters))
        disc_loss = world.wrap(_DiscriminatorLoss(disc)) if disc else None
        bf16 = lambda: autocast(device, precision)  # noqa: E731

        checkpoint = (ctx.scratch or out_dir / ".scratch") / "checkpoint"
        start, history, stop = 0, [], EarlyStop(cfg.patience)
        teacher_batches = 0  # teacher forward passes this session
        replay: list[tuple] = []  # the last teacher_reuse teacher batches: (z, caption inputs, images, features)
        if (checkpoint / "train_state.json").exists():
            state = checkpointer.load(checkpoint)
            start, history = state["step"], state["history"]
            stop.best, stop.best_step, stop.stale = state["best"]["score"], state["best"]["step"], state.get("stale", 0)
            stop.best_state = load_file(str(checkpoint / "best.safetensors"))
            ctx.log(f"distill: resuming at step {start} from {checkpoint}")

        def validate() -> dict[str, float]:
            """{"val_l1", "val_spread_ratio", "val_score"}, the same numbers on every rank."""
            found = torch.zeros(2)
            if world.is_main:
                student.eval()
                with torch.no_grad(), bf16():
                    images = student(val_z, *_caption_args(student, s_val_cond)).float()
                student.train()
                found = torch.tensor([(images - val_target).abs().mean().item(),
                                      (pair_spread(images) / pair_spread(val_target).clamp_min(1e-8)).item()])
            l1, ratio = (world.broadcast(v) for v in found.tolist())
            shortfall = max(0.0, 1.0 - ratio / cfg.diversity_target)
            return {"val_l1": l1, "val_spread_ratio": ratio, "val_score": l1 + w.diversity * shortfall}

        if start == 0:  # the untrained student is a candidate too: training that only hurts writes it back
            history.append({"step": 0, **validate()})
            stop.update(history[0]["val_score"], 0, student)
        started = time.perf_counter()
        for step in range(start, cfg.steps):
            for group in opt.param_groups:
                group["lr"] = cfg.lr * _lr_factor(cfg, step)
            g = step_rng(ctx.seed, step)  # the global batch of this step; this rank keeps its slice
            if step % cfg.teacher_reuse == 0 or not replay:
                z = world.shard(torch.randn(cfg.batch_size, z_dim, generator=g).to(device))
                picked = torch.randint(pool_size, (cfg.batch_size,), generator=g).to(device)
                if w.diversity or w.perceptual_diversity:  # rows 2k, 2k+1 < paired of every rank's slice: one caption
                    for first in range(0, cfg.batch_size, per_rank):
                        picked[first + 1:first + paired:2] = picked[first:first + paired - 1:2]
                cond = {name: world.shard(value[picked]) for name, value in pool.items()}
                s_cond = {name: world.shard(value[picked]) for name, value in s_pool.items()}
                with torch.no_grad(), bf16():
                    target = teacher(z, *_caption_args(teacher, cond)).float()
                t_features = dict(t_taps.out) if t_taps else {}
                if lite0 is not None:
                    with torch.no_grad(), bf16():
                        t_features["lite0"] = [f.float() for f in _perceived(lite0, target[:rows], cfg.perceptual_maps)]
                replay = [*replay, (z, cond, s_cond, target, t_features)][-cfg.teacher_reuse:]
                teacher_batches += 1
                batch = replay[-1]
            else:  # one of the last teacher_reuse teacher batches again
                batch = replay[int(torch.randint(len(replay), (1,), generator=g))]
            z, cond, s_cond, target, t_features = batch
            text = cond["text"]
            with bf16():
                fake = trainable(z, *_caption_args(student, s_cond)).float()
            losses = {"pixel": (fake - target).abs().mean()}
            if lite0 is not None:
                with bf16():
                    seen = _perceived(lite0, fake[:rows], cfg.perceptual_maps)
                aim = t_features["lite0"]
                losses["perceptual"] = _perceptual_distance(seen, aim)
                if w.perceptual_diversity:
                    spread = _perceptual_distance([f[0:paired:2] for f in seen], [f[1:paired:2] for f in seen])
                    aimed = _perceptual_distance([f[0:paired:2] for f in aim], [f[1:paired:2] for f in aim])
                    losses["perceptual_diversity"] = torch.relu(1 - spread / aimed.clamp_min(1e-8))
            if w.feature:
                losses["feature"] = sum(
                    F.mse_loss(adapters[n.replace(".", "_")](s_taps.out[n].float()), t_features[n].float())
                    for n in cfg.feature_layers) / len(cfg.feature_layers)
            if w.diversity:
                aimed = cfg.diversity_target * pair_spread(target[:paired])
                losses["diversity"] = torch.relu(1 - pair_spread(fake[:paired]) / aimed.clamp_min(1e-8))
            if disc is not None:
                with bf16():
                    d_loss = disc_loss(target, fake.detach(), text).float()
                opt_d.zero_grad(set_to_none=True)
                d_loss.backward()
                opt_d.step()
                with bf16():
                    losses["adversarial"] = hinge_g_loss(disc.judge_pair(disc.features(fake), text)).float()
            total = sum(getattr(w, k) * v for k, v in losses.items())
            opt.zero_grad(set_to_none=True)
            total.backward()
            if cfg.grad_clip:
                torch.nn.utils.clip_grad_norm_(trainable.parameters(), cfg.grad_clip)
            opt.step()
            done = step + 1
            if done % cfg.validate_every == 0 or done == cfg.steps:
                checked = validate()  # same decisions on every rank
                world.check_in_sync(checkpointer.modules, done)
                mean_losses = world.mean({k: v.item() for k, v in losses.items()})  # over ranks
                history.append({"step": done, **checked, **{k: round(v, 5) for k, v in mean_losses.items()}})
                stop.update(checked["val_score"], done, student)
                ctx.progress(done, cfg.steps, {k: round(v, 4) for k, v in checked.items()})
            if done % cfg.checkpoint_every == 0 and done < cfg.steps and world.is_main:
                best = {k: v.cpu().contiguous() for k, v in stop.best_state.items()}
                checkpointer.save(checkpoint, {"step": done, "best": {"score": stop.best, "step": stop.best_step},
                                               "stale": stop.stale, "history": history},
                                  extra=lambda tmp: save_file(best, str(tmp / "best.safetensors")))
            if stop.should_stop:
                ctx.log(f"distill: early stop at step {done}: no better validation score in {cfg.patience} checks")
                break
        seconds = time.perf_counter() - started

        student.load_state_dict(stop.best_state)
        student = student.cpu().eval().to(memory_format=torch.contiguous_format)
        teacher = teacher.cpu().to(memory_format=torch.contiguous_format)
        if world.is_main:
            save_model(out_dir, student)
            (out_dir / "distill_history.json").write_text(json.dumps(history, indent=1) + "\n")
        s_size = {"params": count_params(student), "macs": macs_per_image(student)}
        t_size = {"params": count_params(teacher), "macs": macs_per_image(teacher)}
        best = next(h for h in history if h["step"] == stop.best_step)
        return PassResult(
            metrics={"val_l1_best": best["val_l1"], "val_spread_ratio": best["val_spread_ratio"], "params_ratio": s_size["params"] / t_size["params"],
                     "macs_ratio": s_size["macs"] / t_size["macs"]},
            details={"val_l1_start": history[0]["val_l1"], "val_score_best": stop.best, "best_step": stop.best_step, "steps_run": history[-1]["step"],
                     "seconds_this_session": round(seconds, 1), "training_precision": precision.record(),
                     "teacher_batches_this_session": teacher_batches, "processes": world.size, "student": cfg.student,
                     "student_params": s_size["params"], "student_macs": s_size["macs"],
                     "teacher_params": t_size["params"], "teacher_macs": t_size["macs"],
                     "student_widths": layer_widths(student),
                     "student_text_layers": cfg.text_layers or 6,
                     **({"student_channels": list(student.current_config().channels)}
                        if hasattr(student, "current_config") else {})})
