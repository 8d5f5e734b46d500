"""``supernet``: once-for-all distillation of a DF-GAN teacher into one weight-shared elastic student.

The supernet is the teacher's architecture at ``max(width_choices)`` times its widths, started from the teacher
with every stage's channels ordered most active first (``inherit_from_teacher(by_importance=True)``), so that a
sub-network, the **first** channels of each stage (``models/elastic.py``), starts as the teacher's best channels.
Each step trains a *sandwich* of sub-networks on one teacher batch (GAN Compression, OFA, BigNAS): the largest,
the smallest, and ``random_subnets`` drawn at random (each stage's factor from ``width_choices`` on its own, the
depth from ``convs_choices``); their gradients add up on the shared weights before one optimizer step.

Its config groups are ``distill``'s (``distill_config.py``: ``losses``, ``schedule``, ``validation``, ``text``),
with the supernet's own choices beside them. Losses per sub-network, ``distill``'s callables (``train/losses.py``):
``pixel`` (L1 to the teacher's image), ``feature`` (MSE of each block's output against the teacher's through a
1x1 adapter whose input is sliced with the sub-network, started as the channel selection), ``diversity`` (the
pair-spread shortfall against ``losses.diversity_target``) and ``adversarial`` (hinge against a discriminator
judging teacher images real and sub-network images fake, started from **the teacher's own discriminator** when
the teacher ships one (``losses.adversarial_init: teacher``) or from scratch; it learns once a step, on the
smallest sub-network's images).

Data-free, like ``distill``: noise and train-split captions, the teacher's images the targets; ``text.layers``
makes the sub-networks read the shallow MiniLM the bundle will ship (one cached encoder). Checkpoints (supernet,
adapters, discriminator, optimizers, step, history) go to the step's scratch folder every
``validation.checkpoint_every`` steps: a killed run resumes there. Every ``validation.every`` steps the largest,
the middle and the smallest sub-network are scored on *val* captions (L1 to the teacher, spread ratio) into
``supernet_history.json``.

The output artifact is the supernet as an ordinary generator (its largest sub-network), its config's ``meta``
naming the choices under ``supernet``: ``select_subnet`` takes it from there.
"""

from __future__ import annotations

import json
import math
import random
import time
from pathlib import Path
from typing import Literal

import torch
from pydantic import Field, model_validator
from torch import nn

from ..artifact import Artifact, Format
from ..errors import PassFailed
from ..hardware import resolved_bf16
from ..models import DFGenerator, count_params
from ..models.contract import io_spec
from ..models.elastic import Subnet, check_supernet, elastic_forward, from_factors, sample
from ..models.inputs import as_tensors
from ..models.io import save_model
from ..train import losses as loss_kit
from ..train.kit import Checkpointer, adam, autocast, step_rng, training_precision
from ..train.losses import Drawn, Taps, adapter_key, pair_spread, start_as_selection
from .base import Pass, PassConfig, PassContext, PassMetric, PassResult
from .distill_config import LossesConfig, ScheduleConfig, TextConfig, ValidationConfig, refuse_old_keys
from .students import discriminator_for, inherit_from_teacher, slim_config


class SupernetLosses(LossesConfig):
    feature: float = Field(1.0, ge=0, le=1e6)
    diversity: float = Field(0.15, ge=0, le=1e6)
    adversarial_init: Literal["fresh", "teacher"] = "teacher"  # the teacher's own discriminator, or a new one
    diversity_target: float = Field(0.95, gt=0, le=10)


class SupernetSchedule(ScheduleConfig):
    steps: int = Field(20000, ge=1, le=10_000_000)
    lr: float = Field(2e-3, gt=0, le=1.0)
    lr_schedule: Literal["constant", "cosine"] = "cosine"
    grad_clip: float | None = Field(1.0, gt=0, le=1e6)
    teacher_reuse: int = Field(4, ge=1, le=1000)


class SupernetValidation(ValidationConfig):
    every: int = Field(500, ge=1, le=10_000_000)


class SupernetText(TextConfig):
    steps: int = Field(600, ge=1, le=1_000_000)
    lr: float = Field(3e-3, gt=0, le=1.0)


class SupernetConfig(PassConfig):
    # each stage's width as a factor of the teacher's; the supernet is the largest
    width_choices: list[float] = [0.125, 0.1875, 0.25, 0.3125, 0.375, 0.5]
    convs_choices: list[Literal[1, 2]] = [1, 2]  # convs per block a sub-network may have
    random_subnets: int = Field(2, ge=0, le=16)  # the sandwich: largest + smallest + this many random, each step
    losses: SupernetLosses = SupernetLosses()
    schedule: SupernetSchedule = SupernetSchedule()
    validation: SupernetValidation = SupernetValidation()
    text: SupernetText = SupernetText()  # the sub-networks read the shallow MiniLM (see distill)
    bf16: bool | Literal["auto"] = "auto"  # as distill: bf16 only where the hardware computes it

    @model_validator(mode="before")
    @classmethod
    def _old_flat_keys(cls, data: object) -> object:
        return refuse_old_keys(data, "supernet")

    @model_validator(mode="after")
    def _choices(self) -> SupernetConfig:
        if not self.width_choices or not all(0 < f <= 1 for f in self.width_choices):
            raise ValueError(f"width_choices must be factors in (0, 1], at least one, got {self.width_choices}")
        if not self.convs_choices:
            raise ValueError("convs_choices needs at least one of 1, 2")
        return self


def validation_subnets(teacher, cfg: SupernetConfig) -> dict[str, Subnet]:
    """The sub-networks scored at every check: largest, middle (the median factor, fewest convs), smallest."""
    factors = sorted(cfg.width_choices)
    stages = len(teacher.channels)
    return {"largest": from_factors(teacher, [factors[-1]] * stages, max(cfg.convs_choices)),
            "middle": from_factors(teacher, [factors[len(factors) // 2]] * stages, min(cfg.convs_choices)),
            "smallest": from_factors(teacher, [factors[0]] * stages, min(cfg.convs_choices))}


class Supernet(Pass):
    name = "supernet"
    about = "once-for-all distillation: one elastic weight-shared student (sandwich-sampled sub-networks)"
    Config = SupernetConfig
    accepts = (Format.TORCH,)
    produces = Format.TORCH
    needs = ("teacher", "captions")
    metrics = {"val_l1_largest": PassMetric("", "lower", "largest sub-network: mean |image - teacher's| on val"),
               "val_l1_smallest": PassMetric("", "lower", "smallest sub-network: mean |image - teacher's| on val"),
               "params_ratio": PassMetric("", "lower", "supernet parameters / teacher parameters")}
    version = "2"  # 2: the feature MSE in closed form (the same loss, other fp32 rounding)

    @classmethod
    def reads_teacher_discriminator(cls, config: SupernetConfig) -> bool:
        return bool(config.losses.adversarial) and config.losses.adversarial_init == "teacher"

    @classmethod
    def machine_key(cls, config: SupernetConfig) -> dict:
        return {"bf16": resolved_bf16(config.bf16)}

    def run(self, src: Artifact, out_dir: Path, ctx: PassContext) -> PassResult:
        cfg, w, schedule = self.config, self.config.losses, self.config.schedule
        if ctx.threads:
            torch.set_num_threads(ctx.threads)
        torch.manual_seed(ctx.seed)
        device = torch.device("cpu")
        precision = training_precision(cfg.bf16, device.type)
        if not precision.warned:
            ctx.log(f"supernet: {precision.note}")
        bf16 = lambda: autocast(device, precision)  # noqa: E731
        teacher = ctx.teacher_model()
        if not isinstance(teacher, DFGenerator):
            raise PassFailed("supernet: the teacher must be a DF-GAN (the project's generator); for your own "
                             "generator use distill with student: {kind: factory}")
        try:
            check_supernet(teacher.config)
        except ValueError as exc:
            raise PassFailed(f"supernet: {exc}; use distill for this teacher") from None
        t_config = teacher.config
        supernet = DFGenerator(slim_config(t_config, max(cfg.width_choices), max(cfg.convs_choices)))
        supernet.meta = dict(getattr(teacher, "meta", {}))

        captions = ctx.captions(schedule.captions)
        pool = as_tensors(ctx.caption_inputs(captions, io_spec(teacher)), device)["text"]
        val_gen = torch.Generator().manual_seed(ctx.seed + 99)
        val_z = torch.randn(cfg.validation.size, t_config.z_dim, generator=val_gen)
        val_captions = ctx.captions((cfg.validation.size + 1) // 2, seed=ctx.seed + 99, split="val")
        val_captions = [c for caption in val_captions for c in (caption, caption)][:cfg.validation.size]
        val_text = as_tensors(ctx.caption_inputs(val_captions, io_spec(teacher)), device)["text"]
        s_pool, s_val_text = pool, val_text  # what the sub-networks read: the same, or the shallow encoder's
        if cfg.text.layers:
            encoder = ctx.shallow_text_encoder(cfg.text.layers, cfg.text.steps, cfg.text.lr, step="supernet")
            s_pool = as_tensors(ctx.caption_inputs(captions, io_spec(teacher), encoder), device)["text"]
            s_val_text = as_tensors(ctx.caption_inputs(val_captions, io_spec(teacher), encoder), device)["text"]
        with torch.no_grad():
            val_target = teacher(val_z, val_text)
        kept = inherit_from_teacher(supernet, teacher, (val_z, val_text), by_importance=True)
        supernet.train()

        layers = [f"blocks.{i}" for i in range(len(teacher.blocks))] if w.feature else []
        adapters = nn.ModuleDict({adapter_key(n): nn.Conv2d(supernet.config.channels[i + 1], t_config.channels[i + 1], 1)
                                  for i, n in enumerate(layers)})
        start_as_selection(adapters, {n: kept[n] for n in layers})  # supernet channel j is the teacher's kept[j]
        t_taps = Taps(teacher, layers) if layers else None

        disc = discriminator_for("supernet", w.adversarial_init, ctx.teacher.path, t_config) if w.adversarial else None
        opt = adam([*supernet.parameters(), *adapters.parameters()], lr=schedule.lr, betas=(0.5, 0.999))
        opt_d = adam(disc.parameters(), lr=schedule.lr * 0.5, betas=(0.0, 0.9)) if disc else None
        paired = schedule.batch_size // 2 * 2
        terms = {"pixel": loss_kit.PixelLoss()}  # the order their terms are summed in
        if layers:
            terms["feature"] = loss_kit.FeatureLoss(adapters, layers, sliced=True)
        if w.diversity:
            terms["diversity"] = loss_kit.DiversityLoss(w.diversity_target, paired)
        adversarial = loss_kit.AdversarialLoss(disc, opt_d, bf16) if disc else None
        weights = w.weights()
        checkpointer = Checkpointer({"supernet": supernet, "adapters": adapters, **({"disc": disc} if disc else {})},
                                    {"opt": opt, **({"opt_d": opt_d} if opt_d else {})})
        checkpoint = (ctx.scratch or out_dir / ".scratch") / "checkpoint"
        start, history = 0, []
        if (checkpoint / "train_state.json").exists():
            state = checkpointer.load(checkpoint)
            start, history = state["step"], state["history"]
            ctx.log(f"supernet: resuming at step {start} from {checkpoint}")

        checked = validation_subnets(t_config, cfg)
        smallest = checked["smallest"]

        def validate(done: int) -> dict:
            supernet.eval()
            row: dict = {"step": done}
            with torch.no_grad(), bf16():
                for name, subnet in checked.items():
                    images = elastic_forward(supernet, subnet, val_z, s_val_text).float()
                    row[f"{name}_l1"] = round((images - val_target).abs().mean().item(), 5)
                    row[f"{name}_spread"] = round((pair_spread(images) / pair_spread(val_target)).item(), 4)
            supernet.train()
            return row

        if start == 0:
            history.append(validate(0))
        replay: list[tuple] = []
        started = time.perf_counter()
        for step in range(start, schedule.steps):
            for group in opt.param_groups:
                group["lr"] = schedule.lr * schedule.lr_factor(step)
            g = step_rng(ctx.seed, step)
            if step % schedule.teacher_reuse == 0 or not replay:
                z = torch.randn(schedule.batch_size, t_config.z_dim, generator=g)
                picked = torch.randint(len(pool), (schedule.batch_size,), generator=g)
                picked[1:paired:2] = picked[0:paired - 1:2]  # rows 2k, 2k+1: one caption, two noises
                with torch.no_grad(), bf16():
                    target = teacher(z, pool[picked]).float()
                aim = Drawn(target, {n: t_taps.out[n].float() for n in layers})
                replay = [*replay, (z, {"text": pool[picked]}, s_pool[picked], aim)][-schedule.teacher_reuse:]
                batch = replay[-1]
            else:
                batch = replay[int(torch.randint(len(replay), (1,), generator=g))]
            z, cond, s_text, aim = batch
            draw = random.Random(ctx.seed * 1_000_003 + step)
            subnets = [checked["largest"], smallest,
                       *(sample(t_config, cfg.width_choices, cfg.convs_choices, draw) for _ in range(cfg.random_subnets))]
            opt.zero_grad(set_to_none=True)
            totals: dict[str, float] = {}
            for subnet in subnets:
                taps: dict[str, torch.Tensor] = {}
                with bf16():
                    drawn = Drawn(elastic_forward(supernet, subnet, z, s_text, taps).float(), taps)
                losses = {name: loss(drawn, aim, cond) for name, loss in terms.items()}
                if adversarial is not None:
                    if subnet is smallest:  # the discriminator learns once a step, on the hardest fakes
                        adversarial.learn(drawn, aim, cond)
                    losses["adversarial"] = adversarial.generator_loss(drawn, cond)
                total = sum(weights[k] * v for k, v in losses.items())
                (total / len(subnets)).backward()
                for k, v in losses.items():
                    totals[k] = totals.get(k, 0.0) + v.item() / len(subnets)
            if disc is not None:  # the generator terms' gradients into the discriminator are not its own update
                disc.zero_grad(set_to_none=True)
            if schedule.grad_clip:
                torch.nn.utils.clip_grad_norm_([*supernet.parameters(), *adapters.parameters()], schedule.grad_clip)
            opt.step()
            done = step + 1
            if not all(math.isfinite(v) for v in totals.values()):
                raise PassFailed(f"supernet: training diverged at step {done} ({totals}); lower lr or restart "
                                 f"from the last checkpoint in {checkpoint}")
            if done % cfg.validation.every == 0 or done == schedule.steps:
                row = {**validate(done), **{k: round(v, 5) for k, v in totals.items()}}
                history.append(row)
                ctx.progress(done, schedule.steps, {k: v for k, v in row.items() if k.endswith("_l1")})
            if done % cfg.validation.checkpoint_every == 0 and done < schedule.steps:
                checkpointer.save(checkpoint, {"step": done, "history": history})
        seconds = time.perf_counter() - started

        supernet = supernet.eval()
        meta = {**supernet.meta, "supernet": {
            "width_choices": sorted(cfg.width_choices), "convs_choices": sorted(cfg.convs_choices),
            "teacher": t_config.model_dump(), "steps": schedule.steps, "text_layers": cfg.text.layers,
            "text_steps": cfg.text.steps, "text_lr": cfg.text.lr}}
        save_model(out_dir, supernet, meta)
        (out_dir / "supernet_history.json").write_text(json.dumps(history, indent=1, sort_keys=True) + "\n")
        last = history[-1]
        return PassResult(
            metrics={"val_l1_largest": last["largest_l1"], "val_l1_smallest": last["smallest_l1"],
                     "params_ratio": count_params(supernet) / count_params(teacher)},
            details={"seconds_this_session": round(seconds, 1), "steps_run": last["step"],
                     "training_precision": precision.record(), "subnets_per_step": len(subnets) if schedule.steps else 0,
                     "supernet_channels": list(supernet.config.channels), "validation": last})
