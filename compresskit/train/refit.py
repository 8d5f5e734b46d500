"""A discriminator fitted to a trained, frozen generator: for a teacher whose training discriminator was not kept.

``compresskit train`` ships the discriminator with the generator it trained. A teacher trained before that (or
elsewhere) can get one afterwards: the discriminator of its training config (``ndf``, ``lr_d``, betas, batch,
the matching-aware gradient penalty, all from the config) learns, with the generator frozen, real train images
with their captions (real) against mismatched captions and the generator's images (fake), the same loss as in
training. It is not the discriminator of the training run, and a model card says so; distillation's adversarial
term starts from it as it would from that one (``distill``/``supernet`` ``adversarial_init: teacher``).
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path

import torch

from ..cache import atomic_dir
from ..data import load_dataset
from ..models import DFDiscriminator
from ..models.contract import io_spec
from ..models.inputs import as_tensors, text_inputs
from ..models.io import load_model, resolve_model_dir, save_model
from ..text import TextEncoder
from ..threads import torch_threads
from .config import TrainConfig
from .kit import adam, autocast, step_rng, training_precision
from .loop import DiscriminatorLoss, _batch_indices


def refit_discriminator(config: TrainConfig, model_ref: str | Path, out_dir: Path, steps: int,
                        progress: Callable[[int, int, dict], None] = lambda done, total, stats: None) -> dict:
    """Fit ``config``'s discriminator to the frozen generator ``model_ref`` for ``steps`` steps; write a copy of
    the model folder with it into ``out_dir`` (replaced whole). Returns the fit's figures."""
    with torch_threads(config.threads):
        torch.manual_seed(config.seed)
        source = resolve_model_dir(model_ref)
        generator = load_model(source).eval().requires_grad_(False)
        dataset = load_dataset(config.data.name, **config.data.build_options()).split("train")
        unique = sorted(set(dataset.captions))
        position = {caption: i for i, caption in enumerate(unique)}
        rows = torch.tensor([position[c] for c in dataset.captions])
        text_all = as_tensors(text_inputs(io_spec(generator), unique, TextEncoder()))["text"][rows]
        images = torch.from_numpy(dataset.images).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)
        precision = training_precision(config.bf16, "cpu")
        disc = DFDiscriminator(config.generator.image_size, config.discriminator.ndf, config.generator.text_dim)
        loss_fn = DiscriminatorLoss(disc, config, precision)
        opt = adam(disc.parameters(), lr=config.lr_d, betas=config.betas)
        started, history = time.perf_counter(), []
        for step in range(steps):
            g = step_rng(config.seed + 7, step)
            idx = _batch_indices(config.seed + 7, step, len(images), config.batch_size)
            z = torch.randn(len(idx), generator.config.z_dim, generator=g)
            real, text = images[idx], text_all[idx]
            with torch.no_grad(), autocast(torch.device("cpu"), precision):
                fake = generator(z, text).float()
            loss, _ = loss_fn(real, text, text.roll(1, 0), fake, text, step % config.gp_every == 0)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if (step + 1) % 50 == 0 or step + 1 == steps:
                with torch.no_grad(), autocast(torch.device("cpu"), precision):
                    d_real = disc.judge_pair(disc.features(real), text).float().mean().item()
                    d_fake = disc.judge_pair(disc.features(fake), text).float().mean().item()
                history.append({"step": step + 1, "loss_d": round(loss.item(), 4), "d_real": round(d_real, 3),
                                "d_fake": round(d_fake, 3)})
                progress(step + 1, steps, history[-1])
        meta = {**generator.meta, "discriminator_refit": {
            "steps": steps, "train_config": config.name, "batch_size": config.batch_size, "lr_d": config.lr_d,
            "last": history[-1] if history else {},
            "note": "fitted to the frozen generator after training (the training run's discriminator was not kept)"}}
        with atomic_dir(Path(out_dir), replace=True) as tmp:
            for extra in source.iterdir():  # the card, samples: everything but what save_model writes
                if extra.is_file() and extra.name not in ("config.json", "model.safetensors", "checksums.sha256",
                                                          "discriminator.safetensors"):
                    shutil.copy2(extra, tmp / extra.name)
            save_model(tmp, generator, meta, discriminator=disc.eval())
        return {"seconds": round(time.perf_counter() - started, 1), "history": history}
