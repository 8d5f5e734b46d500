"""``distill``: teach a smaller generator to reproduce the teacher (the recipe's input generator).

Student: the incoming artifact (e.g. a pruned generator: ``student: input``) or a fresh slim copy of the
teacher's architecture (``student: slim``: every width times ``width``, optionally one conv per block
(``convs_per_block: 1``) and depthwise-separable convs (``separable``)). Data-free by default: each step
draws noise and train-split captions, and the teacher's output is the target. Losses (weights in config):

* ``pixel``: L1 between student and teacher images;
* ``perceptual``: L1 between their EfficientNet-Lite0 features (costly: Lite0 runs at 128 px);
* ``feature``: MSE between named intermediate layers, the student's through learnable 1x1 adapters;
* ``adversarial``: hinge loss against a discriminator that learns teacher images (real) from student
  images (fake) for the same caption.

Checkpoints (student, adapters, discriminator, optimizers, step) go to the step's scratch folder every
``checkpoint_every`` steps, so a killed run resumes there. Under ``torchrun`` (``compresskit run`` with
``--nproc-per-node``) each step's global batch of ``batch_size`` noise/caption pairs is drawn from
``(seed, step)`` and split over the ranks; the student, its adapters and the discriminator train under
DistributedDataParallel; rank 0 validates, checkpoints and writes the student. Every ``validate_every`` steps the pixel L1 on a
fixed validation set is measured; training stops early after ``patience`` checks without improvement,
and the best student is the one written.
"""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path
from typing import Literal

import torch
from pydantic import Field
from safetensors.torch import load_file, save_file
from torch import nn
from torch.nn import functional as F

from ..artifact import Artifact
from ..cache import atomic_dir
from ..models import DFDiscriminator, count_params
from ..models.dfgan import DFGenerator, GeneratorConfig
from ..models.io import load_torch_generator, write_torch_generator
from ..models.stats import macs_per_image
from ..train.distributed import current as current_world
from ..train.state import load_train_state, save_train_state
from .base import Pass, PassConfig, PassContext
from .calibration import model_captions


class LossWeights(PassConfig):
    pixel: float = Field(1.0, ge=0, le=1e6)
    perceptual: float = Field(0.0, ge=0, le=1e6)
    feature: float = Field(0.0, ge=0, le=1e6)
    adversarial: float = Field(0.0, ge=0, le=1e6)


class DistillConfig(PassConfig):
    student: Literal["input", "slim"] = "input"
    width: float = Field(0.5, gt=0, le=1)  # slim: every channel width times this
    convs_per_block: Literal[1, 2] | None = None  # slim: depth (None: the teacher's)
    separable: bool = False  # slim: depthwise-separable 3x3 convolutions
    steps: int = Field(2000, ge=1, le=10_000_000)
    batch_size: int = Field(32, ge=2, le=4096)
    lr: float = Field(5e-4, gt=0, le=1.0)
    losses: LossWeights = LossWeights()
    feature_layers: list[str] = ["blocks.0", "blocks.1"]
    captions: int = Field(4096, ge=8, le=1_000_000)  # distinct train captions drawn from
    validate_every: int = Field(250, ge=1, le=10_000_000)
    validation_size: int = Field(128, ge=8, le=100_000)
    patience: int = Field(4, ge=1, le=1000)
    checkpoint_every: int = Field(250, ge=1, le=10_000_000)
    bf16: bool = True


def slim_config(teacher: GeneratorConfig, width: float, convs_per_block: int | None = None,
                separable: bool = False) -> GeneratorConfig:
    scale = lambda widths: [max(1, round(w * width)) for w in widths]  # noqa: E731
    return GeneratorConfig(**{**teacher.model_dump(), "channels": scale(teacher.channels),
                              "hidden": scale(teacher.hidden), "separable": separable,
                              "convs_per_block": convs_per_block or teacher.convs_per_block})


class _Trainable(nn.Module):
    """The student and its feature adapters as one module, so DDP syncs both (the adapters are applied to
    the student's tapped features outside ``forward``; their gradients still flow into these parameters)."""

    def __init__(self, student: nn.Module, adapters: nn.ModuleDict):
        super().__init__()
        self.student, self.adapters = student, adapters

    def forward(self, z: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        return self.student(z, text)


class _DiscriminatorLoss(nn.Module):
    """Hinge loss of the distillation discriminator (teacher images real, student images fake), one forward."""

    def __init__(self, disc: DFDiscriminator):
        super().__init__()
        self.disc = disc

    def forward(self, target: torch.Tensor, fake: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        disc = self.disc
        return (F.relu(1 - disc.judge_pair(disc.features(target), text)).mean()
                + F.relu(1 + disc.judge_pair(disc.features(fake), text)).mean())


class _Taps:
    """Forward hooks that keep the outputs of named layers."""

    def __init__(self, model: nn.Module, names: list[str]):
        self.out: dict[str, torch.Tensor] = {}
        modules = dict(model.named_modules())
        for name in names:
            modules[name].register_forward_hook(lambda m, i, o, name=name: self.out.__setitem__(name, o))


def _probe(model: nn.Module, name: str, example: tuple) -> int:
    probe = copy.deepcopy(model)
    taps = _Taps(probe, [name])
    with torch.no_grad():
        probe(*example)
    return taps.out[name].shape[1]


class Distill(Pass):
    name = "distill"
    about = "teacher -> student distillation (pixel L1, Lite0 perceptual, feature MSE via 1x1 adapters, hinge)"
    Config = DistillConfig
    accepts = ("torch",)
    produces = "torch"
    needs = ("teacher",)
    distributed = True

    def run(self, src: Artifact, out_dir: Path, ctx: PassContext) -> dict:
        from ..text import TextEncoder

        cfg, w = self.config, self.config.losses
        world = current_world()
        world.per_rank_batch(cfg.batch_size, "distill batch_size")
        if ctx.threads:
            torch.set_num_threads(ctx.threads)
        torch.manual_seed(ctx.seed)
        device = world.device  # this rank's GPU when there is one, else the CPU
        teacher = load_torch_generator(ctx.teacher.path).eval().requires_grad_(False)
        if cfg.student == "input":
            student = load_torch_generator(src.path)
        else:
            student = DFGenerator(slim_config(teacher.config, cfg.width, cfg.convs_per_block, cfg.separable))
        teacher, student = teacher.to(device), student.to(device).train()
        pool = TextEncoder().encode(model_captions(src, cfg.captions, ctx.seed)).to(device)
        z_dim = teacher.config.z_dim
        val_gen = torch.Generator().manual_seed(ctx.seed + 99)
        val_z = torch.randn(cfg.validation_size, z_dim, generator=val_gen).to(device)
        val_text = pool[torch.randint(len(pool), (cfg.validation_size,), generator=val_gen).to(device)]
        if world.is_main:  # rank 0 alone validates
            with torch.no_grad():
                val_target = teacher(val_z, val_text)

        example = (val_z[:2], val_text[:2])
        adapters = nn.ModuleDict({
            name.replace(".", "_"): nn.Conv2d(_probe(student, name, example), _probe(teacher, name, example), 1)
            for name in cfg.feature_layers} if w.feature else {}).to(device)
        t_taps, s_taps = (_Taps(teacher, cfg.feature_layers), _Taps(student, cfg.feature_layers)) if w.feature else (None, None)
        disc = DFDiscriminator(teacher.config.image_size, 32, teacher.config.text_dim).to(device) if w.adversarial else None
        lite0 = None
        if w.perceptual:
            from ..metrics.features import lite0 as load_lite0

            lite0 = load_lite0().to(device)
        opt = torch.optim.Adam([*student.parameters(), *adapters.parameters()], lr=cfg.lr, betas=(0.5, 0.999))
        opt_d = torch.optim.Adam(disc.parameters(), lr=cfg.lr * 2, betas=(0.0, 0.9)) if disc else None
        modules = {"student": student, "adapters": adapters, **({"disc": disc} if disc else {})}
        trainable = world.wrap(_Trainable(student, adapters))
        disc_loss = world.wrap(_DiscriminatorLoss(disc)) if disc else None
        optimizers = {"opt": opt, **({"opt_d": opt_d} if opt_d else {})}

        checkpoint = (ctx.scratch or out_dir / ".scratch") / "checkpoint"
        start, best, history = 0, {"l1": float("inf"), "step": 0}, []
        best_state = copy.deepcopy(student.state_dict())
        if (checkpoint / "train_state.json").exists():
            state = load_train_state(checkpoint, modules=modules, optimizers=optimizers)
            start, best, history = state["step"], state["best"], state["history"]
            best_state = load_file(str(checkpoint / "best.safetensors"))
            ctx.log(f"distill: resuming at step {start} from {checkpoint}")
        autocast = lambda: torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.bf16)  # noqa: E731

        def validate() -> float:
            student.eval()
            with torch.no_grad(), autocast():
                l1 = (student(val_z, val_text).float() - val_target).abs().mean().item()
            student.train()
            return l1

        if start == 0:
            history.append({"step": 0, "val_l1": world.broadcast(validate() if world.is_main else 0.0)})
        started, stale = time.perf_counter(), 0
        for step in range(start, cfg.steps):
            g = torch.Generator().manual_seed(ctx.seed * 1_000_003 + step)
            z = torch.randn(cfg.batch_size, z_dim, generator=g).to(device)
            text = pool[torch.randint(len(pool), (cfg.batch_size,), generator=g).to(device)]
            z, text = world.shard(z), world.shard(text)  # this rank's slice of the global batch
            with torch.no_grad(), autocast():
                target = teacher(z, text).float()
            with autocast():
                fake = trainable(z, text)
            fake = fake.float()
            losses = {"pixel": (fake - target).abs().mean()}
            if lite0 is not None:
                to01 = lambda x: (x.clamp(-1, 1) + 1) / 2  # noqa: E731
                with autocast():
                    losses["perceptual"] = (lite0(to01(fake)) - lite0(to01(target)).detach()).abs().mean().float()
            if w.feature:
                losses["feature"] = sum(
                    F.mse_loss(adapters[n.replace(".", "_")](s_taps.out[n].float()), t_taps.out[n].float())
                    for n in cfg.feature_layers) / len(cfg.feature_layers)
            if disc is not None:
                with autocast():
                    d_loss = disc_loss(target, fake.detach(), text).float()
                opt_d.zero_grad(set_to_none=True)
                d_loss.backward()
                opt_d.step()
                with autocast():
                    losses["adversarial"] = -disc.judge_pair(disc.features(fake), text).mean().float()
            total = sum(getattr(w, k) * v for k, v in losses.items())
            opt.zero_grad(set_to_none=True)
            total.backward()
            opt.step()
            done = step + 1
            if done % cfg.validate_every == 0 or done == cfg.steps:
                val_l1 = world.broadcast(validate() if world.is_main else 0.0)  # same decisions on every rank
                world.check_in_sync(modules, done)
                mean_losses = world.mean({k: v.item() for k, v in losses.items()})  # over ranks
                history.append({"step": done, "val_l1": val_l1, **{k: round(v, 5) for k, v in mean_losses.items()}})
                if val_l1 < best["l1"]:
                    best, stale = {"l1": val_l1, "step": done}, 0
                    best_state = copy.deepcopy(student.state_dict())
                else:
                    stale += 1
                ctx.progress(done, cfg.steps, {"val_l1": round(val_l1, 5)})
            if done % cfg.checkpoint_every == 0 and done < cfg.steps and world.is_main:
                with atomic_dir(checkpoint, replace=True) as tmp:  # both files or neither
                    save_file({k: v.cpu().contiguous() for k, v in best_state.items()}, str(tmp / "best.safetensors"))
                    save_train_state(tmp, modules=modules, optimizers=optimizers,
                                     meta={"step": done, "best": best, "history": history})
            if stale >= cfg.patience:
                ctx.log(f"distill: early stop at step {done}: no better validation L1 in {cfg.patience} checks")
                break
        seconds = time.perf_counter() - started

        student.load_state_dict(best_state)
        student = student.cpu().eval()
        teacher = teacher.cpu()
        meta = {**student.meta} if hasattr(student, "meta") else {**teacher.meta}
        if world.is_main:
            write_torch_generator(out_dir, student, meta)
            (out_dir / "distill_history.json").write_text(json.dumps(history, indent=1) + "\n")
        return {"val_l1_start": history[0]["val_l1"], "val_l1_best": best["l1"], "best_step": best["step"],
                "steps_run": history[-1]["step"], "seconds_this_session": round(seconds, 1), "processes": world.size,
                "student_params": count_params(student), "student_macs": macs_per_image(student),
                "teacher_params": count_params(teacher), "teacher_macs": macs_per_image(teacher),
                "student_channels": list(student.config.channels), "generator_meta": meta}
