"""``distill``: teach a smaller generator to reproduce the teacher (the recipe's input generator).

    - distill:
        student: {kind: slim, width: 0.25, convs_per_block: 1, init: teacher}
        losses: {pixel: 1.0, feature: 1.0, feature_layers: [blocks.0, blocks.1], diversity: 0.15}
        schedule: {steps: 8000, batch_size: 32, lr: 0.002, lr_schedule: cosine, grad_clip: 1.0, teacher_reuse: 8}
        validation: {every: 250, size: 128, patience: 4, checkpoint_every: 250}
        text: {layers: 2, steps: 600, lr: 0.003}

The groups are ``distill_config.py``'s; the students ``students.py``'s; the losses ``train/losses.py``'s.

Student (``student.kind``), for any generator (the model contract), one of:

* ``input``: the incoming artifact itself (e.g. a pruned generator, ours or a user's);
* ``factory``: a fresh instance from the user's own factory with ``student.kwargs`` merged into its kwargs
  (``{width: 16}``): for a user generator whose factory takes width arguments;
* ``slim``: the project's own DF-GAN, slim: the teacher's widths times ``width`` when the teacher is a DF-GAN,
  else DF-GAN's default widths times ``width`` fitted to the teacher's io spec (z, text, image size); ``width``
  is one factor or one per stage (stem, then each block's output); optionally one conv per block
  (``convs_per_block: 1``) and depthwise-separable convs (``separable``); of a token-conditioned teacher, fewer
  cross-attention layers (``attention``: the resolutions kept) and token-transformer layers (``token_layers``:
  the first ones kept). ``init: teacher`` starts it from the teacher's own weights (a DF-GAN teacher): the
  caption MLP, every fusion MLP's hidden layer and the token path of a token-conditioned teacher (token norm and
  transformer, attention keys, values and position queries) are copied whole (their widths are not scaled; with
  no token transformer kept, each key and value starts as the teacher's composed with its token input
  projection), and each channel dimension keeps the teacher's channels that are most active on the validation
  inputs (stem, shortcuts, the RGB head, fusion outputs, each cross-attention's output; a one-conv block's conv
  from the teacher's first conv); the feature adapters start as that selection. ``init: random`` (default)
  starts from scratch.

Data-free: each step draws noise and train-split captions, and the teacher's output is the target. With
``text.layers: K`` the student reads what the bundle's shallower text encoder will give it (MiniLM's first K
layers, distilled as the bundle step distils them: one cached encoder), the teacher the full MiniLM's vectors.
Losses (``losses``: each one's weight and options): ``pixel``, ``perceptual`` (at ``perceptual_px``, pooled or
on the ``perceptual_maps``, first ``perceptual_rows`` rows), ``perceptual_diversity``, ``feature`` (the
``feature_layers``), ``adversarial`` (its discriminator new or the teacher's: ``adversarial_init``) and
``diversity`` (against ``diversity_target`` times the teacher's spread; ``diversity_rows: 2m`` pairs only the
first 2m rows of each batch, per process, so the other rows draw captions of their own).

Optimisation (``schedule``): Adam at ``lr``, constant or on a cosine to 0 by the last step, the gradient norm
optionally clipped. The teacher's forward pass costs most of a step, so ``teacher_reuse: k`` draws a fresh teacher
batch every k steps and trains the steps between on one of the last k batches again (their images and features
kept): ~k times fewer teacher passes for the same number of student steps.

Checkpoints (student, adapters, discriminator, optimizers, step) go to the step's scratch folder every
``validation.checkpoint_every`` steps, so a killed run resumes there (with ``teacher_reuse`` > 1 the kept batches
are not checkpointed: a resumed run draws afresh, so it ends near, not exactly at, where an uninterrupted one
does). Under ``torchrun`` each step's global batch of ``batch_size`` noise/caption pairs is drawn from
``(seed, step)`` and split over the ranks; the student, its adapters and the discriminator train under
DistributedDataParallel; rank 0 validates, checkpoints and writes the student.

Validation (choices are made on the validation split, never on eval): every ``validation.every`` steps the
student draws ``validation.size`` fixed inputs built from *val*-split captions, in pairs of two noises per
caption; the score is the pixel L1 to the teacher plus ``losses.diversity`` times the same spread shortfall as
in training. Training stops early after ``patience`` checks without a better score; the best student is written.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from pydantic import model_validator
from safetensors.torch import load_file, save_file
from torch import nn

from ..artifact import Artifact, Format
from ..hardware import resolved_bf16
from ..models import count_params
from ..models.contract import Generator, io_spec, layer_widths
from ..models.inputs import as_tensors, input_names
from ..models.io import save_model
from ..models.stats import macs_per_image
from ..train import losses as loss_kit
from ..train.kit import Checkpointer, EarlyStop, Precision, World, adam, autocast, current, step_rng, training_precision
from ..train.losses import Drawn, Taps, pair_spread
from .base import Pass, PassConfig, PassContext, PassMetric, PassResult
from .distill_config import DistillLosses, DistillValidation, ScheduleConfig, StudentConfig, TextConfig, refuse_old_keys
from .students import discriminator_for, inherit_from_teacher, make_student


class DistillConfig(PassConfig):
    student: StudentConfig = StudentConfig()
    losses: DistillLosses = DistillLosses()
    schedule: ScheduleConfig = ScheduleConfig()
    validation: DistillValidation = DistillValidation()
    text: TextConfig = TextConfig()
    # bfloat16 autocast: auto = where the hardware computes bf16 natively (AVX512-BF16 / AMX / a bf16 GPU), else fp32
    # (emulated bf16 is 26-47x slower); true / false force either (compresskit.hardware)
    bf16: bool | Literal["auto"] = "auto"
    # the teacher, the student and their convolutions in channels-last memory: oneDNN's faster layout for these
    # small convs (a step of the edge recipe's shape 1.2-1.4x faster on an AVX512-BF16 EPYC, fp32 and bf16)
    channels_last: bool = True

    @model_validator(mode="before")
    @classmethod
    def _old_flat_keys(cls, data: object) -> object:
        return refuse_old_keys(data, "distill")


class _Trainable(nn.Module):
    """The student and its feature adapters as one module, so DDP syncs both (the adapters are applied to
    the student's tapped features outside ``forward``; their gradients still flow into these parameters)."""

    def __init__(self, student: nn.Module, adapters: nn.ModuleDict):
        super().__init__()
        self.student, self.adapters = student, adapters

    def forward(self, z: torch.Tensor, *caption: torch.Tensor) -> torch.Tensor:
        return self.student(z, *caption)


def _caption_args(model: Generator, cond: dict[str, torch.Tensor], rows=slice(None)) -> tuple[torch.Tensor, ...]:
    """The caption inputs ``model`` reads (its io spec's names after ``z``), rows ``rows`` of each."""
    return tuple(cond[name][rows] for name in input_names(io_spec(model))[1:])


@dataclass
class _TeacherBatch:
    """One teacher batch: noise, the caption inputs the teacher and the student read, what the teacher drew."""

    z: torch.Tensor
    cond: dict[str, torch.Tensor]
    s_cond: dict[str, torch.Tensor]
    drawn: Drawn


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
    version = "6"  # 2: any generator (the model contract); factory students; 3: val-split validation, diversity;
    # 4: diversity_target, diversity_rows; 5: bf16 auto (hardware-decided), channels_last; 6: the feature MSE in
    # closed form (the same loss, other fp32 rounding)
    distributed = True

    @classmethod
    def reads_teacher_discriminator(cls, config: DistillConfig) -> bool:
        return bool(config.losses.adversarial) and config.losses.adversarial_init == "teacher"

    @classmethod
    def machine_key(cls, config: DistillConfig) -> dict:
        return {"bf16": resolved_bf16(config.bf16)}  # bf16 and fp32 train different students

    def run(self, src: Artifact, out_dir: Path, ctx: PassContext) -> PassResult:
        cfg, schedule = self.config, self.config.schedule
        world = current()
        world.per_rank_batch(schedule.batch_size, "distill schedule.batch_size")
        if ctx.threads:
            torch.set_num_threads(ctx.threads)
        torch.manual_seed(ctx.seed)
        precision = training_precision(cfg.bf16, world.device.type)  # bf16 only where the hardware computes it
        if world.is_main and not precision.warned:  # a warning was printed already
            ctx.log(f"distill: {precision.note}")
        session = _Session(cfg, src, ctx, world, precision)
        checkpoint = (ctx.scratch or out_dir / ".scratch") / "checkpoint"
        start = session.resume(checkpoint)
        started = time.perf_counter()
        for step in range(start, schedule.steps):
            losses = session.train_step(step)
            done = step + 1
            if done % cfg.validation.every == 0 or done == schedule.steps:
                session.check(done, losses)
            if done % cfg.validation.checkpoint_every == 0 and done < schedule.steps and world.is_main:
                session.save_checkpoint(checkpoint, done)
            if session.stop.should_stop:
                ctx.log(f"distill: early stop at step {done}: no better validation score in "
                        f"{cfg.validation.patience} checks")
                break
        return session.finish(out_dir, time.perf_counter() - started)


class _Session:
    """One distillation: the models, their inputs, the losses and optimizers; trains, validates and writes."""

    def __init__(self, cfg: DistillConfig, src: Artifact, ctx: PassContext, world: World, precision: Precision):
        self.cfg, self.ctx, self.world, self.precision = cfg, ctx, world, precision
        device = self.device = world.device  # this rank's GPU when there is one, else the CPU
        layout = torch.channels_last if cfg.channels_last else torch.contiguous_format
        teacher = ctx.teacher_model()
        student = make_student(cfg.student, src, teacher)
        # one memory layout for both before anything is compared: a student that starts as the teacher draws its images
        self.teacher = teacher.to(device).to(memory_format=layout)
        self.student = student = student.to(device).train().to(memory_format=layout)
        self._read_captions()
        kept = {}
        if cfg.student.init == "teacher":
            kept = inherit_from_teacher(student, teacher, (self.val_z, *_caption_args(teacher, self.val_cond)))
        self._make_losses(kept, layout)
        self.history: list[dict] = []
        self.stop = EarlyStop(cfg.validation.patience)
        self.teacher_batches = 0  # teacher forward passes this session
        self.replay: list[_TeacherBatch] = []  # the last teacher_reuse teacher batches

    def _read_captions(self) -> None:
        """The train caption pool and the fixed validation inputs, as the teacher and as the student read them."""
        cfg, ctx, teacher, device = self.cfg, self.ctx, self.teacher, self.device
        io = io_spec(teacher)
        # every caption input the teacher reads (pooled vector; token states for a token-conditioned teacher)
        captions = ctx.captions(cfg.schedule.captions)
        self.pool = as_tensors(ctx.caption_inputs(captions, io), device)
        size = cfg.validation.size
        self.val_z = torch.randn(size, teacher.config.z_dim, generator=torch.Generator().manual_seed(ctx.seed + 99))
        self.val_z = self.val_z.to(device)
        val_captions = ctx.captions((size + 1) // 2, seed=ctx.seed + 99, split="val")
        val_captions = [c for caption in val_captions for c in (caption, caption)][:size]
        self.val_cond = as_tensors(ctx.caption_inputs(val_captions, io), device)
        self.s_pool, self.s_val_cond = self.pool, self.val_cond  # what the student reads: the same, or the shallow encoder's
        if cfg.text.layers:
            encoder = ctx.shallow_text_encoder(cfg.text.layers, cfg.text.steps, cfg.text.lr, step="distill")
            self.s_pool = as_tensors(ctx.caption_inputs(captions, io, encoder), device)
            self.s_val_cond = as_tensors(ctx.caption_inputs(val_captions, io, encoder), device)
        # rank 0 alone validates (no grad: frozen)
        self.val_target = teacher(self.val_z, *_caption_args(teacher, self.val_cond)) if self.world.is_main else None

    def _make_losses(self, kept: dict, layout: torch.memory_format) -> None:
        """The loss callables in the order their terms are summed, the optimizers and the checkpointer (the
        adapters, then the discriminator, then Lite0: the order of their random draws)."""
        cfg, w, student, teacher, device = self.cfg, self.cfg.losses, self.student, self.teacher, self.device
        adapters = nn.ModuleDict()
        if w.feature:
            examples = {which: (self.val_z[:2], *_caption_args(model, self.val_cond, slice(0, 2)))
                        for which, model in (("student", student), ("teacher", teacher))}
            adapters = loss_kit.feature_adapters(student, teacher, w.feature_layers, examples, kept)
        adapters = adapters.to(device, memory_format=layout)
        self.t_taps, self.s_taps = ((Taps(teacher, w.feature_layers), Taps(student, w.feature_layers)) if w.feature
                                    else (None, None))
        disc = (discriminator_for("distill", w.adversarial_init, self.ctx.teacher.path, teacher.config)
                .to(device, memory_format=layout) if w.adversarial else None)
        self.perceiver = (loss_kit.Perceiver(w.perceptual_px, w.perceptual_maps, w.perceptual_rows, device,
                                             self._autocast) if w.perceptual or w.perceptual_diversity else None)
        per_rank = cfg.schedule.batch_size // self.world.size
        self.paired = min(w.diversity_rows or per_rank, per_rank) // 2 * 2  # rows 2k, 2k+1 < paired: one caption
        self.opt = adam([*student.parameters(), *adapters.parameters()], lr=cfg.schedule.lr, betas=(0.5, 0.999))
        opt_d = adam(disc.parameters(), lr=cfg.schedule.lr * 2, betas=(0.0, 0.9)) if disc else None
        self.checkpointer = Checkpointer({"student": student, "adapters": adapters, **({"disc": disc} if disc else {})},
                                         {"opt": self.opt, **({"opt_d": opt_d} if opt_d else {})})
        self.trainable = self.world.wrap(_Trainable(student, adapters))
        terms = {"pixel": loss_kit.PixelLoss()}
        if self.perceiver is not None:
            terms["perceptual"] = loss_kit.PerceptualLoss()
            if w.perceptual_diversity:
                terms["perceptual_diversity"] = loss_kit.PerceptualDiversityLoss(self.paired)
        if w.feature:
            terms["feature"] = loss_kit.FeatureLoss(adapters, w.feature_layers)
        if w.diversity:
            terms["diversity"] = loss_kit.DiversityLoss(w.diversity_target, self.paired)
        if disc is not None:
            judge = self.world.wrap(loss_kit.DiscriminatorLoss(disc))
            terms["adversarial"] = loss_kit.AdversarialLoss(disc, opt_d, self._autocast, judge)
        self.terms, self.weights = terms, w.weights()

    def _autocast(self):
        return autocast(self.device, self.precision)

    def resume(self, checkpoint: Path) -> int:
        """The first step to train: where the checkpoint left off (its state restored), else 0 (the untrained
        student scored first: training that only hurts writes it back)."""
        if not (checkpoint / "train_state.json").exists():
            self.history.append({"step": 0, **self.validate()})
            self.stop.update(self.history[0]["val_score"], 0, self.student)
            return 0
        state = self.checkpointer.load(checkpoint)
        self.history = state["history"]
        self.stop.best, self.stop.best_step = state["best"]["score"], state["best"]["step"]
        self.stop.stale = state.get("stale", 0)
        self.stop.best_state = load_file(str(checkpoint / "best.safetensors"))
        self.ctx.log(f"distill: resuming at step {state['step']} from {checkpoint}")
        return state["step"]

    def _teacher_batch(self, g: torch.Generator) -> _TeacherBatch:
        """A fresh global batch from ``g`` (this rank's slice) and what the teacher draws for it."""
        schedule, world, device = self.cfg.schedule, self.world, self.device
        z = world.shard(torch.randn(schedule.batch_size, self.teacher.config.z_dim, generator=g).to(device))
        picked = torch.randint(len(self.pool["text"]), (schedule.batch_size,), generator=g).to(device)
        if self.weights["diversity"] or self.weights["perceptual_diversity"]:  # rows 2k, 2k+1 < paired: one caption
            per_rank = schedule.batch_size // world.size
            for first in range(0, schedule.batch_size, per_rank):
                picked[first + 1:first + self.paired:2] = picked[first:first + self.paired - 1:2]
        cond = {name: world.shard(value[picked]) for name, value in self.pool.items()}
        s_cond = {name: world.shard(value[picked]) for name, value in self.s_pool.items()}
        with torch.no_grad(), self._autocast():
            target = self.teacher(z, *_caption_args(self.teacher, cond)).float()
        drawn = Drawn(target, dict(self.t_taps.out) if self.t_taps else {})
        if self.perceiver is not None:
            with torch.no_grad():
                drawn.perceived = [f.float() for f in self.perceiver(target)]
        return _TeacherBatch(z, cond, s_cond, drawn)

    def train_step(self, step: int) -> dict[str, torch.Tensor]:
        """One optimizer step of the student (on a fresh teacher batch or a kept one); its loss terms."""
        schedule = self.cfg.schedule
        for group in self.opt.param_groups:
            group["lr"] = schedule.lr * schedule.lr_factor(step)
        g = step_rng(self.ctx.seed, step)  # the global batch of this step; this rank keeps its slice
        if step % schedule.teacher_reuse == 0 or not self.replay:
            self.replay = [*self.replay, self._teacher_batch(g)][-schedule.teacher_reuse:]
            self.teacher_batches += 1
            batch = self.replay[-1]
        else:  # one of the last teacher_reuse teacher batches again
            batch = self.replay[int(torch.randint(len(self.replay), (1,), generator=g))]
        with self._autocast():
            fake = self.trainable(batch.z, *_caption_args(self.student, batch.s_cond)).float()
        drawn = Drawn(fake, self.s_taps.out if self.s_taps else {}, perceive=self.perceiver)  # seen when first needed
        losses = {name: loss(drawn, batch.drawn, batch.cond) for name, loss in self.terms.items()}
        total = sum(self.weights[k] * v for k, v in losses.items())
        self.opt.zero_grad(set_to_none=True)
        total.backward()
        if schedule.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.trainable.parameters(), schedule.grad_clip)
        self.opt.step()
        return losses

    def validate(self) -> dict[str, float]:
        """{"val_l1", "val_spread_ratio", "val_score"}, the same numbers on every rank."""
        found = torch.zeros(2)
        if self.world.is_main:
            student, target = self.student, self.val_target
            student.eval()
            with torch.no_grad(), self._autocast():
                images = student(self.val_z, *_caption_args(student, self.s_val_cond)).float()
            student.train()
            found = torch.tensor([(images - target).abs().mean().item(),
                                  (pair_spread(images) / pair_spread(target).clamp_min(1e-8)).item()])
        l1, ratio = (self.world.broadcast(v) for v in found.tolist())
        shortfall = max(0.0, 1.0 - ratio / self.cfg.losses.diversity_target)
        return {"val_l1": l1, "val_spread_ratio": ratio, "val_score": l1 + self.cfg.losses.diversity * shortfall}

    def check(self, done: int, losses: dict[str, torch.Tensor]) -> None:
        """Validate after step ``done``: history, early stop, progress (the same decisions on every rank)."""
        checked = self.validate()
        self.world.check_in_sync(self.checkpointer.modules, done)
        mean_losses = self.world.mean({k: v.item() for k, v in losses.items()})  # over ranks
        self.history.append({"step": done, **checked, **{k: round(v, 5) for k, v in mean_losses.items()}})
        self.stop.update(checked["val_score"], done, self.student)
        self.ctx.progress(done, self.cfg.schedule.steps, {k: round(v, 4) for k, v in checked.items()})

    def save_checkpoint(self, checkpoint: Path, done: int) -> None:
        stop = self.stop
        best = {k: v.cpu().contiguous() for k, v in stop.best_state.items()}
        self.checkpointer.save(checkpoint, {"step": done, "best": {"score": stop.best, "step": stop.best_step},
                                            "stale": stop.stale, "history": self.history},
                               extra=lambda tmp: save_file(best, str(tmp / "best.safetensors")))

    def finish(self, out_dir: Path, seconds: float) -> PassResult:
        """Write the best student (rank 0) and report it against the teacher."""
        cfg, history, stop = self.cfg, self.history, self.stop
        self.student.load_state_dict(stop.best_state)
        student = self.student.cpu().eval().to(memory_format=torch.contiguous_format)
        teacher = self.teacher.cpu().to(memory_format=torch.contiguous_format)
        if self.world.is_main:
            save_model(out_dir, student)
            # keys sorted, as the checkpoint stores them: a resumed run writes the same bytes as an uninterrupted one
            (out_dir / "distill_history.json").write_text(json.dumps(history, indent=1, sort_keys=True) + "\n")
        s_size = {"params": count_params(student), "macs": macs_per_image(student)}
        t_size = {"params": count_params(teacher), "macs": macs_per_image(teacher)}
        best = next(h for h in history if h["step"] == stop.best_step)
        return PassResult(
            metrics={"val_l1_best": best["val_l1"], "val_spread_ratio": best["val_spread_ratio"],
                     "params_ratio": s_size["params"] / t_size["params"], "macs_ratio": s_size["macs"] / t_size["macs"]},
            details={"val_l1_start": history[0]["val_l1"], "val_score_best": stop.best, "best_step": stop.best_step,
                     "steps_run": history[-1]["step"], "seconds_this_session": round(seconds, 1),
                     "training_precision": self.precision.record(), "teacher_batches_this_session": self.teacher_batches,
                     "processes": self.world.size, "student": cfg.student.kind,
                     "student_params": s_size["params"], "student_macs": s_size["macs"],
                     "teacher_params": t_size["params"], "teacher_macs": t_size["macs"],
                     "student_widths": layer_widths(student), "student_text_layers": cfg.text.layers or 6,
                     **({"student_channels": list(student.current_config().channels)}
                        if hasattr(student, "current_config") else {})})
