"""Train the alignment encoder (``compresskit align --out DIR``) on the real emoji train split.

Softmax over every train caption's frozen MiniLM vector; random shifts of up to 2 px (on white) as the
only augmentation (colour and orientation carry meaning: "red apple" vs "green apple", arrows). Seeded
and deterministic on CPU. The folder gets config.json, model.safetensors and MODEL_CARD.md with the
R-precision of the real eval split (held-out art of known captions), of a train subset, and of the eval
split with shuffled captions (must be near chance).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch.nn import functional as F

from ..cache import atomic_dir
from ..data import load_dataset
from ..hardware import BF16, autocast, training_precision
from ..model_files import write_checksums
from ..text import TextEncoder
from .alignment import R_CANDIDATES, AlignerConfig, ImageEncoder, alignment_scores, embed_images, save_aligner

DATA = {"size": 32, "styles": ["twemoji", "openmoji"]}


def _shift(batch: torch.Tensor, rng: torch.Generator, max_px: int = 2) -> torch.Tensor:
    """Random translation by up to ``max_px`` pixels, filling with white (+1)."""
    n, _, h, w = batch.shape
    padded = F.pad(batch, (max_px,) * 4, value=1.0)
    dx, dy = torch.randint(0, 2 * max_px + 1, (2, n), generator=rng)
    return torch.stack([padded[i, :, dy[i] : dy[i] + h, dx[i] : dx[i] + w] for i in range(n)])


def train_aligner(
    out_dir: Path,
    *,
    epochs: int = 40,
    batch_size: int = 128,
    lr: float = 2e-3,
    seed: int = 0,
    limit: int | None = None,
    bf16: BF16 = "auto",
    config: AlignerConfig | None = None,
    progress: Callable[[int, int, float], None] | None = None,
) -> dict:
    """Train, score and write the encoder folder atomically; returns the measured figures."""
    torch.manual_seed(seed)
    precision = training_precision(bf16, "cpu")
    dataset = load_dataset("emoji", **DATA, limit=limit)
    train, held_out = dataset.split("train"), dataset.split("eval")
    captions = sorted(set(train.captions))
    index = {c: i for i, c in enumerate(captions)}
    text = TextEncoder().encode(captions)
    y = torch.tensor([index[c] for c in train.captions])
    x = torch.from_numpy(train.images).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)

    model = ImageEncoder(config)
    steps_per_epoch = max(1, len(x) // batch_size)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=5e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=epochs * steps_per_epoch)
    rng = torch.Generator().manual_seed(seed)
    started = time.perf_counter()
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(len(x), generator=rng)
        total = 0.0
        for step in range(steps_per_epoch):
            idx = order[step * batch_size : (step + 1) * batch_size]
            with autocast("cpu", precision):
                vecs = model(_shift(x[idx], rng))
            loss = F.cross_entropy(model.log_scale.exp() * vecs.float() @ text.T, y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            schedule.step()
            total += loss.item()
        if progress:
            progress(epoch + 1, epochs, total / steps_per_epoch)
    seconds = time.perf_counter() - started

    model.eval()
    eval_ids = torch.tensor([index[c] for c in held_out.captions])
    eval_vecs = embed_images(model, held_out.images)
    sample = torch.randperm(len(y), generator=torch.Generator().manual_seed(1))[: len(eval_ids)]
    figures = {
        "real_eval": alignment_scores(eval_vecs, eval_ids, text),
        "real_train_subset": alignment_scores(embed_images(model, train.images[sample.numpy()]), y[sample], text),
        "real_eval_shuffled_captions": alignment_scores(
            eval_vecs, eval_ids[torch.randperm(len(eval_ids), generator=torch.Generator().manual_seed(2))], text),
        "chance": 1 / (R_CANDIDATES + 1),
        "train_seconds": round(seconds, 1),
        "epochs": epochs, "batch_size": batch_size, "lr": lr, "seed": seed, "precision": precision.record(),
        "train_images": len(x), "captions": len(captions), "data": {**DATA, "limit": limit},
    }
    with atomic_dir(Path(out_dir), replace=True) as tmp:
        save_aligner(tmp, model, figures)
        write_checksums(tmp)
        (tmp / "MODEL_CARD.md").write_text(_card(figures, model), encoding="utf-8")
    return figures


def _card(f: dict, model: ImageEncoder) -> str:
    params = sum(p.numel() for p in model.parameters())
    rows = "\n".join(
        f"| {name.replace('_', ' ')} | {f[name]['r_precision']:.3f} | {f[name]['caption_similarity']:.3f} | {f[name]['n']} |"
        for name in ("real_eval", "real_train_subset", "real_eval_shuffled_captions"))
    limit = f" --limit {f['data']['limit']}" if f["data"]["limit"] else ""
    return f"""# emoji32-align

Image encoder for text-image alignment metrics (`r_precision`, `caption_similarity` in `compresskit eval`):
a {len(model.config.widths)}-stage CNN ({params:,} params, widths {model.config.widths}) mapping a 32 px
image to MiniLM's 384-d sentence space, trained with a softmax over all {f['captions']:,} train captions'
frozen vectors on the real emoji *train* split ({f['train_images']:,} images, styles {', '.join(f['data']['styles'])}).

Command: `compresskit align --out compresskit/zoo/emoji32-align --epochs {f['epochs']}{limit}`
(batch {f['batch_size']}, peak lr {f['lr']}, one-cycle schedule, seed {f['seed']}); it took {f['train_seconds']} s on
{os.cpu_count()} CPU cores, torch {torch.__version__}.

## Scores on real images

R-precision: the image's own caption must rank first among it and {R_CANDIDATES} random other train
captions (chance {f['chance']:.2f}). The eval split holds art of known captions in a style the encoder never
saw for that caption; shuffled captions pair each eval image with another image's caption.

| images | R-precision | caption similarity | n |
|---|---|---|---|
{rows}
"""
