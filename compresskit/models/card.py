"""Package a training run as a model folder with a measured model card.

    compresskit card RUN_DIR --out compresskit/zoo/emoji32-base [--checkpoint 5000]

Copies the EMA generator (``final/`` or a chosen checkpoint) as ``config.json`` + ``model.safetensors``,
renders ``samples.png`` for the run's own sample captions (seed 0), and writes ``MODEL_CARD.md`` whose
figures are all computed here: params and MACs from the model, wall time and images/s from the run's
``log.jsonl``, the machine from the running one.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
from pathlib import Path

import torch
import yaml

from ..cache import atomic_dir
from ..errors import ModelError
from .io import load_generator, write_generator
from .stats import generator_stats

SAMPLES_FILE = "samples.png"
CARD_FILE = "MODEL_CARD.md"


def training_figures(run_dir: Path, up_to_step: int) -> dict:
    """Wall time and throughput from log.jsonl (each record covers the images since the previous one)."""
    config = yaml.safe_load((run_dir / "config.yaml").read_text("utf-8"))
    records = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines() if line.strip()]
    records = [r for r in records if r["step"] <= up_to_step]
    if not records:
        raise ModelError(f"{run_dir / 'log.jsonl'} has no records up to step {up_to_step}")
    seconds, previous = 0.0, 0
    for record in records:
        images = (record["step"] - previous) * config["batch_size"]
        seconds += record.get("seconds", images / record["images_per_s"])
        previous = record["step"]
    rates = [r["images_per_s"] for r in records]
    return {
        "steps": up_to_step,
        "batch_size": config["batch_size"],
        "images_seen": up_to_step * config["batch_size"],
        "wall_seconds": round(seconds * up_to_step / records[-1]["step"]),  # extrapolated past the last record
        "images_per_s_overall": round(records[-1]["step"] * config["batch_size"] / seconds, 1),
        "images_per_s_median_window": round(statistics.median(rates), 1),
        "threads": config.get("threads") or "torch's default number of",
        "config": config,
    }


def shapes_controllability(generator: torch.nn.Module, data: dict, n: int = 1000, seed: int = 0) -> dict:
    """Attribute accuracy of one generated image per eval-split caption (the analytic reader)."""
    from ..data import load_dataset
    from ..metrics import attribute_accuracy
    from ..text import TextEncoder
    from ..train.config import DataConfig
    from ..grid import to_images

    held_out = load_dataset("shapes", **DataConfig.model_validate(data).build_options()).split("eval")
    captions, labels = held_out.captions[:n], held_out.labels[:n]
    z = torch.randn(len(captions), generator.config.z_dim, generator=torch.Generator().manual_seed(seed))
    with torch.inference_mode():
        images = to_images(generator(z, TextEncoder().encode(captions)))
    return {"n": len(captions), "generated": attribute_accuracy(images, labels),
            "real": attribute_accuracy(held_out.images[:n], labels)}


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def write_card(run_dir: Path, out_dir: Path, *, checkpoint: int | None = None, title: str | None = None) -> Path:
    """Build the model folder at ``out_dir`` (atomically) from ``run_dir``."""
    from ..generate import generate
    from ..grid import save_grid

    run_dir, out_dir = Path(run_dir), Path(out_dir)
    source = run_dir / "final" if checkpoint is None else run_dir / "checkpoints" / f"step-{checkpoint:07d}"
    generator = load_generator(source)
    step = int(generator.meta.get("step", 0))
    figures = training_figures(run_dir, step)
    stats = generator_stats(generator)
    captions = figures["config"]["sample_captions"]
    name = title or out_dir.name
    with atomic_dir(out_dir, replace=True) as tmp:
        write_generator(tmp, generator, {**generator.meta, "data": figures["config"]["data"], "name": name})
        grid = generate(generator, captions, n=8, seed=0)
        flat = grid.images.reshape(-1, *grid.images.shape[2:])
        save_grid(tmp / SAMPLES_FILE, flat, [f"{c} #{j}" for c in captions for j in range(8)], columns=8, tile_px=64)
        control = shapes_controllability(generator, figures["config"]["data"]) \
            if figures["config"]["data"]["name"] == "shapes" else None
        text = _card_text(name, run_dir, figures, stats, captions, control)
        (tmp / CARD_FILE).write_text(text, encoding="utf-8")
    return out_dir


def _control_section(control: dict | None) -> str:
    if control is None:
        return ""
    rows = "\n".join(
        f"| {k} | {control['generated'][k]:.3f} | {control['real'][k]:.3f} |" for k in control["generated"]
    )
    return f"""
## Controllability

Attribute accuracy of one generated image per caption of the first {control['n']} eval-split captions
(noise seed 0), read by the analytic reader `compresskit.metrics.attribute_accuracy`; the real images
of the same captions give the reader's own floor. `object` needs colour, shape, size and position all
right; `image` needs every object right and nothing extra. Computed by `compresskit card`.

| attribute | generated | real |
|---|---|---|
{rows}
"""


def _objective(cfg: dict) -> str:
    text = (f"hinge loss with mismatched-caption negatives; matching-aware gradient penalty (weight "
            f"{cfg['gp_weight']}, power {cfg['gp_power']}, every {cfg['gp_every']} steps); generator EMA {cfg['ema_decay']}")
    if cfg.get("recon_weight"):
        text += f"; plus {cfg['recon_weight']} x MSE to the caption's real image"
    return text


def _card_text(name: str, run_dir: Path, fig: dict, stats: dict, captions: list[str], control: dict | None) -> str:
    from ..train.config import DataConfig

    cfg = fig["config"]
    data = cfg["data"]
    data_options = {k: v for k, v in DataConfig.model_validate(data).build_options().items() if v is not None}
    hours = fig["wall_seconds"] / 3600
    return f"""# {name}

A DF-GAN-style text-to-image generator trained by compresskit: noise `z` ({cfg['generator']['z_dim']}-d) and
a caption vector `text` (384-d, unit-norm all-MiniLM-L6-v2, `compresskit.text.TextEncoder`) in, a
{stats['image_size']}x{stats['image_size']} RGB image in [-1, 1] out.

```bash
compresskit generate "{captions[0]}" --model {name} --n 8 --seed 0 -o grid.png
```

## Size

| | |
|---|---|
| parameters | {stats['params']:,} ({stats['weights_mb_fp32']} MB fp32) |
| MACs per image | {stats['macs_per_image']:,} (PyTorch FLOP counter / 2, batch 1) |
| widths | stem + blocks {stats['channels']}, block hidden {stats['hidden']} |
| discriminator (training only) | {cfg['discriminator']} |

Measured by `compresskit info {name} --json`.

## Training

| | |
|---|---|
| command | `compresskit train recipes/train/{cfg['name']}.yaml` (config copied below) |
| data | `{data['name']}` dataset, train split; options {json.dumps(data_options)} |
| steps | {fig['steps']:,} at batch {fig['batch_size']} ({fig['images_seen']:,} images seen) |
| wall time | {fig['wall_seconds']:,} s ({hours:.2f} h) on {os.cpu_count()} CPU cores ({_cpu_name()}), {fig['threads']} threads, torch {torch.__version__} |
| images/s | {fig['images_per_s_overall']} overall; {fig['images_per_s_median_window']} median over {cfg['log_every']}-step windows |
| objective | {_objective(cfg)} |
| precision | {"bf16 autocast" if cfg['bf16'] else "fp32"}, {"channels-last" if cfg['channels_last'] else "contiguous"} |

Wall time and images/s are summed from the run's `log.jsonl` (each record times the steps since the
previous one, including sampling and checkpoint writes). Windows where other work shared the two cores
run slower; the median window shows the undisturbed rate.

## Samples

`samples.png`: the run's sample captions, 8 samples each, noise seed 0 (column j uses the same noise in
every row). Reproduce: `compresskit generate {' '.join(json.dumps(c) for c in captions)} --model {name} --n 8 --seed 0 -o samples.png`.

![samples](samples.png)
{_control_section(control)}
## Quality

KID / FID / R-precision on the held-out split come with the metrics issue (`compresskit eval`).

## Training config

```yaml
{yaml.safe_dump(cfg, sort_keys=False).strip()}
```
"""

