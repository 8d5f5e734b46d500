"""The GAN training loop, top to bottom: data -> models -> (D step, G step, EMA) x steps -> checkpoints.

Deterministic on CPU: model init from ``seed``; the batch order and the noise of step ``s`` are derived
from ``(seed, s)`` alone, so a resumed run draws exactly what an uninterrupted one would have.

Under ``torchrun`` every rank runs this loop on its slice of that same global batch (``batch_size`` is
global), G and D's loss train under DistributedDataParallel, and rank 0 alone writes (``distributed.py``).

Run folder:
    config.yaml                     the resolved training config
    checkpoints/step-0000500/       config.json + model.safetensors (EMA generator, usable as --model)
                                    + train_state.safetensors/.json (G, D, optimizers, step)
    samples/step-0000500.png        EMA samples: sample_captions x sample_seeds
    log.jsonl                       one line per log interval
    final/                          the EMA generator after the last step
"""

from __future__ import annotations

import copy
import json
import math
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import torch
import yaml
from torch import nn
from torch.nn import functional as F

from ..cache import atomic_dir
from ..data import load_dataset
from ..errors import ConfigError, TrainingDiverged
from ..grid import save_grid, to_images
from ..models import DFDiscriminator, DFGenerator, count_params, io_spec, save_model
from ..models.inputs import as_tensors, text_inputs
from ..text import TextEncoder
from ..threads import torch_threads
from .config import TrainConfig
from .distributed import DEFAULT_TIMEOUT_S, World, main_first, process_group
from .kit import (
    Checkpointer,
    Precision,
    adam,
    autocast,
    ema_update,
    hinge_d_loss,
    hinge_g_loss,
    step_rng,
    training_precision,
)

CHECKPOINTS = "checkpoints"
SAMPLE_SEED = 12345


@dataclass(frozen=True)
class TrainResult:
    out_dir: Path
    final_dir: Path
    steps: int
    resumed_from: int
    seconds: float
    images_per_second: float


def _batch_indices(seed: int, step: int, n: int, batch: int) -> torch.Tensor:
    """Batch ``step`` of an epoch-wise shuffle (drop-last) that depends only on (seed, step)."""
    per_epoch = max(1, n // batch)
    epoch, i = divmod(step, per_epoch)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 7919 + epoch))
    return order[i * batch : (i + 1) * batch]


def _paired(batch: torch.Tensor, half: int) -> torch.Tensor:
    """Rows ``[0, half)`` twice, then the rest (``half`` = 0: the batch unchanged)."""
    return torch.cat([batch[:half], batch[:half], batch[2 * half :]]) if half else batch


def latest_checkpoint(out_dir: Path) -> Path | None:
    folders = sorted((out_dir / CHECKPOINTS).glob("step-*")) if (out_dir / CHECKPOINTS).is_dir() else []
    return folders[-1] if folders else None


def existing_checkpoint(out_dir: Path, resume: bool) -> Path | None:
    """The run's last checkpoint; an error if there is one and the caller did not ask to resume."""
    existing = latest_checkpoint(out_dir)
    if existing is not None and not resume:
        raise ConfigError(f"{out_dir} already holds checkpoints; pass --resume to continue or choose a new --out")
    return existing


class DiscriminatorLoss(nn.Module):
    """D's whole loss for one step in one forward (DDP needs one forward per backward).

    Hinge on real images with their captions (real), with mismatched captions (fake) and on generated
    images with the captions they were made from (fake), plus on every ``gp_every``-th step the matching-aware gradient penalty (DF-GAN) on real
    pairs, weighted by ``gp_every`` (lazy regularisation). The penalty's input gradients are taken with
    ``create_graph`` inside this forward, so the one backward gives D its full gradient.
    """

    def __init__(self, D: DFDiscriminator, config: TrainConfig, precision: Precision):
        super().__init__()
        self.D, self.config, self.precision = D, config, precision

    def forward(self, real, text, mismatched, fake, fake_text, with_gp: bool):
        D, cfg = self.D, self.config
        with autocast(real.device, self.precision):
            feats_real = D.features(real)
            d_real = D.judge_pair(feats_real, text)
            d_mismatch = D.judge_pair(feats_real, mismatched)
            d_fake = D.judge_pair(D.features(fake), fake_text)
        loss = hinge_d_loss(d_real, d_fake, d_mismatch).float()
        if not with_gp:
            return loss, None
        real = real.detach().requires_grad_(True)
        text = text.detach().requires_grad_(True)
        with autocast(real.device, self.precision):
            out = D.judge_pair(D.features(real), text)
        grad_img, grad_txt = torch.autograd.grad(out.sum(), (real, text), create_graph=True)
        gp = torch.cat([grad_img.flatten(1), grad_txt.flatten(1)], dim=1).float().norm(2, dim=1).pow(cfg.gp_power).mean()
        return loss + cfg.gp_weight * cfg.gp_every * gp, gp


def _stop(reason: str, last_good: Path | None) -> NoReturn:
    where = f"the last good checkpoint ({last_good}) is kept" if last_good else "no checkpoint was written yet"
    raise TrainingDiverged(f"{reason}; {where}; lower lr_d / lr_g or raise gp_weight, then --resume")


def train(
    config: TrainConfig,
    out_dir: Path,
    *,
    resume: bool = False,
    on_log: Callable[[dict], None] | None = None,
    timeout_s: int = DEFAULT_TIMEOUT_S,
) -> TrainResult:
    """Train in this process, or as one rank of a ``torchrun`` job (see ``train/distributed.py``)."""
    with process_group(timeout_s) as world, torch_threads(world.threads(config.threads)):
        return _train(config, Path(out_dir), resume, on_log, world)


def _train(config: TrainConfig, out_dir: Path, resume: bool, on_log: Callable[[dict], None] | None,
           world: World) -> TrainResult:
    existing = existing_checkpoint(out_dir, resume)
    world.per_rank_batch(config.batch_size)  # the global batch must split evenly over the ranks
    device = world.device
    torch.manual_seed(config.seed)

    # data: images in [-1, 1] and their caption vectors, precomputed once (cached on disk; rank 0 builds)
    with main_first(world):
        dataset = load_dataset(config.data.name, **config.data.build_options()).split("train")
        encoder = TextEncoder()
        G = DFGenerator(config.generator)
        io = io_spec(G)
        unique = sorted(set(dataset.captions))
        # the caption inputs G reads (pooled vector; token states too for a token-conditioned G), per caption
        unique_inputs = as_tensors(text_inputs(io, unique, encoder))
        sample_rows = [c for c in config.sample_captions for _ in range(config.sample_seeds)]
        sample_inputs = as_tensors(text_inputs(io, sample_rows, encoder), device)
    images = torch.from_numpy(dataset.images).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)
    memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
    precision = training_precision(config.bf16, device.type)  # bf16 only where the hardware computes it
    images = images.contiguous(memory_format=memory_format).to(device)
    position = {caption: i for i, caption in enumerate(unique)}
    caption_rows = torch.tensor([position[c] for c in dataset.captions])
    caption_inputs = {name: value[caption_rows].to(device) for name, value in unique_inputs.items()}  # per image
    text_vecs = caption_inputs["text"]
    sample_z = torch.randn(len(sample_rows), config.generator.z_dim, generator=torch.Generator().manual_seed(SAMPLE_SEED))
    sample_z = sample_z.to(device)

    G = G.to(device, memory_format=memory_format)
    D = DFDiscriminator(config.generator.image_size, config.discriminator.ndf, config.generator.text_dim)
    D = D.to(device, memory_format=memory_format)
    G_ema = copy.deepcopy(G).eval().requires_grad_(False)
    opt_g = adam(G.parameters(), lr=config.lr_g, betas=config.betas)
    opt_d = adam(D.parameters(), lr=config.lr_d, betas=config.betas)
    checkpointer = Checkpointer({"G": G, "D": D, "G_ema": G_ema}, {"opt_g": opt_g, "opt_d": opt_d})

    start_step = 0
    if resume and existing is not None:
        saved = TrainConfig.model_validate(yaml.safe_load((out_dir / "config.yaml").read_text("utf-8")))
        changed = config.resume_conflicts(saved)
        if changed:
            raise ConfigError(
                f"cannot resume {out_dir}: {', '.join(changed)} differ from the run's config.yaml; "
                "restore them or start a new --out"
            )
        start_step = checkpointer.load(existing)["step"]
    if world.broadcast(start_step) != start_step:
        raise ConfigError(f"rank {world.rank} would resume at step {start_step}, rank 0 elsewhere: "
                          "--out must be one folder every node sees (a shared filesystem)")
    # DDP after the resume: it broadcasts rank 0's weights, and every rank loaded the same checkpoint
    G_train, D_loss = world.wrap(G), world.wrap(DiscriminatorLoss(D, config, precision))
    if world.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "config.yaml").write_text(yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False))

    meta = {"train_config": config.name, "data": config.data.model_dump(mode="json"), "params": count_params(G),
            "discriminator_params": count_params(D), "processes": world.size,
            "precision": precision.record()}
    last_good = existing
    window_start, window_images, total_images, started = time.perf_counter(), 0, 0, time.perf_counter()
    log_path = out_dir / "log.jsonl"
    if world.is_main and log_path.exists():  # drop records of steps redone after a resume: each step logged once
        kept = [line for line in log_path.read_text().splitlines() if json.loads(line)["step"] <= start_step]
        log_path.write_text("".join(line + "\n" for line in kept))

    def checkpoint(step: int) -> Path:
        folder = out_dir / CHECKPOINTS / f"step-{step:07d}"
        if world.is_main:
            checkpointer.save(folder, {"step": step}, extra=lambda tmp: save_model(tmp, G_ema, {**meta, "step": step},
                                                                                  discriminator=D))
            for old in sorted((out_dir / CHECKPOINTS).glob("step-*"))[: -config.keep_checkpoints]:
                shutil.rmtree(old)
        return folder

    def samples(step: int) -> None:
        if not world.is_main:
            return
        with torch.no_grad(), autocast(device, precision):
            fake = G_ema(sample_z, *sample_inputs.values())
        labels = [c for c in config.sample_captions for _ in range(config.sample_seeds)]
        save_grid(out_dir / "samples" / f"step-{step:07d}.png", to_images(fake), labels,
                  columns=config.sample_seeds * 2, tile_px=64)

    for step in range(start_step, config.steps):
        # the global batch of this step, from (seed, step) alone; this rank keeps its slice
        noise = step_rng(config.seed, step)
        idx = _batch_indices(config.seed, step, len(images), config.batch_size).to(device)
        z = torch.randn(len(idx), config.generator.z_dim, generator=noise).to(device)
        real, text, mismatched = images[idx], text_vecs[idx], text_vecs[idx].roll(1, 0)
        real, text, mismatched, z = (world.shard(t) for t in (real, text, mismatched, z))
        # mode seeking: the first half's captions drawn twice (rows i and i + half share a caption)
        half = len(z) // 2 if config.diversity_weight else 0
        text_g, real_g = (_paired(t, half) for t in (text, real))
        g_inputs = [_paired(world.shard(value[idx]), half) for value in caption_inputs.values()]  # text_g first

        # discriminator: real/matching vs fake and real/mismatched captions (hinge), plus lazy MA-GP
        with autocast(device, precision):
            fake = G_train(z, *g_inputs)
        loss_d, gp = D_loss(real, text, mismatched, fake.detach(), text_g, step % config.gp_every == 0)
        opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        opt_d.step()

        # generator: fool D on matching captions, plus an optional paired reconstruction term (each caption
        # has one or two real images, so the pair anchors layout and colour early on; annealed away with
        # recon_until, since a term that pulls every noise to one image erases variety). MSE, not pix2pix's
        # L1: on sparse images (shapes: 92% white) L1's per-pixel median is a blank canvas, a dead end.
        # D here is the bare module: its gradients from this pass are never synced or used (zeroed at its step)
        with autocast(device, precision):
            loss_adv = hinge_g_loss(D.judge_pair(D.features(fake), text_g)).float()
        loss_recon = F.mse_loss(fake.float(), real_g)
        recon_weight = config.recon_weight_at(step)
        loss_g = loss_adv + recon_weight * loss_recon if recon_weight else loss_adv
        mode_ratio = None
        if half:
            mode_ratio = ((fake[:half] - fake[half : 2 * half]).float().abs().mean()
                          / (z[:half] - z[half : 2 * half]).abs().mean())
            loss_g = loss_g + config.diversity_weight / (mode_ratio + 1e-5)
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()
        ema_update(G_ema, G, min(config.ema_decay, (1 + step) / (10 + step)))

        losses = world.mean({"loss_d": loss_d.item(), "loss_g": loss_adv.item(), "mse": loss_recon.item(),
                             **({"gp": gp.item()} if gp is not None else {}),
                             **({"mode_ratio": mode_ratio.item()} if mode_ratio is not None else {})})
        bad = {k: v for k, v in losses.items() if not math.isfinite(v) or abs(v) > config.max_loss}
        if bad:
            name, value = next(iter(bad.items()))
            _stop(f"training diverged at step {step}: {name} = {value:.4g}", last_good)
        window_images += config.batch_size
        total_images += config.batch_size
        done = step + 1
        if done % config.log_every == 0 or done == config.steps:
            now = time.perf_counter()
            seconds = now - window_start
            # how much the batch's samples differ (mean over ranks)
            spread = world.mean({"spread": fake.detach().float().std(dim=0).mean().item()})["spread"]
            record = {"step": done, "seconds": round(seconds, 3), "images_per_s": round(window_images / seconds, 2),
                      **losses, "sample_spread": round(spread, 5)}
            if spread < config.min_sample_spread:
                _stop(f"generator collapsed at step {done}: all samples are the same image "
                      f"(spread {spread:.2g} < min_sample_spread {config.min_sample_spread})", last_good)
            world.check_in_sync(checkpointer.modules, done)
            if world.is_main:
                with log_path.open("a") as fh:
                    fh.write(json.dumps(record) + "\n")
                if on_log:
                    on_log({**record, "total_steps": config.steps})
            window_start, window_images = now, 0
        if done % config.sample_every == 0 or done == config.steps:
            samples(done)
        if done % config.checkpoint_every == 0 or done == config.steps:
            last_good = checkpoint(done)

    seconds = time.perf_counter() - started
    final_dir = out_dir / "final"
    if world.is_main:
        with atomic_dir(final_dir, replace=True) as tmp:
            save_model(tmp, G_ema, {**meta, "step": config.steps}, discriminator=D)  # ships with the teacher
    world.barrier()  # every rank returns once the final model is on disk
    return TrainResult(out_dir, final_dir, config.steps, start_step, seconds,
                       total_images / seconds if seconds > 0 else 0.0)
