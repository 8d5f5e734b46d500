"""Package a training run as a model folder with a measured model card.

    compresskit card RUN_DIR --out compresskit/zoo/emoji32-base [--checkpoint 5000]

Copies the EMA generator (``final/`` or a chosen checkpoint) as ``config.json`` + ``model.safetensors``,
renders ``samples.png`` for the run's own sample captions (seed 0), and writes ``MODEL_CARD.md`` whose
figures are all computed here: params and MACs from the model, wall time and images/s from the run's
``log.jsonl``, quality from ``compresskit eval``'s protocol (KID/FID, shapes attributes), the machine from
the running one.
"""

from __future__ import annotations

import json
import os
import statistics
from pathlib import Path

import torch
import yaml

from ..cache import atomic_dir
from ..data.config import DataConfig
from ..errors import ModelError
from ..grid import save_grid
from ..hardware import machine_info
from ..metrics.attributes import attribute_accuracy
from ..metrics.distribution import KID_SUBSET_SIZE, KID_SUBSETS, MIN_SAMPLES
from ..metrics.diversity import DIVERSITY_K
from ..metrics.evaluate import eval_set, evaluate
from ..model_files import write_checksums
from .dfgan import GeneratorConfig
from .io import load_model, save_model
from .sampling import generate_diversity, generate_for, sample_grid
from .stats import generator_stats

SAMPLES_FILE = "samples.png"
SWEEP_FILE = "attributes.png"
# shapes teachers: one attribute changes per row (colour, then shape, size, position) against row 1
ATTRIBUTE_SWEEP = (
    "a large red circle at the center", "a large green circle at the center", "a large blue circle at the center",
    "a large yellow circle at the center", "a large red square at the center", "a large red triangle at the center",
    "a large red diamond at the center", "a small red circle at the center", "a large red circle at the top left",
    "a large red circle at the bottom right", "a large red circle at the top",
)
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
        "wall_seconds": round(seconds * up_to_step / records[-1]["step"], 1),  # extrapolated past the last record
        "images_per_s_overall": round(records[-1]["step"] * config["batch_size"] / seconds, 1),
        "images_per_s_median_window": round(statistics.median(rates), 1),
        "threads": config.get("threads") or "torch's default number of",
        "config": config,
    }


def quality(generator: torch.nn.Module, data: dict, seed: int = 0) -> dict:
    """``compresskit eval`` figures of the generator and of the real eval split (the floor)."""
    evalset = eval_set(data)
    generated = generate_for(generator, evalset.captions, seed=seed)
    options = {"seed": seed, "distribution": len(evalset.captions) >= MIN_SAMPLES}
    figures = {"n": len(evalset.captions), "seed": seed, "data": evalset.data,
               "model": evaluate(generated, evalset, diversity_images=generate_diversity(generator, evalset, seed=seed),
                                 **options),
               "real": evaluate(evalset.real_eval, evalset, **options)}
    if evalset.labels is not None:  # shapes: attribute accuracy of one-object and two-object captions apart
        objects = (evalset.labels[:, :, 0] >= 0).sum(1)
        figures["by_objects"] = {int(k): {"n": int((objects == k).sum()),
                                          **attribute_accuracy(generated[objects == k], evalset.labels[objects == k])}
                                 for k in sorted(set(objects.tolist()))}
    return figures


def _cpu_name() -> str:
    machine = machine_info()
    return f"{machine['cpu']}, {machine['isa_label']}"


def _precision_text(cfg: dict, ran: dict | None) -> str:
    """How the run trained: the precision it ran (from the checkpoint's meta) or, for older ones, its config."""
    if ran:
        return f"{ran['name']} (bf16: {ran['asked']}; {ran['hardware']})"
    return "bf16 autocast" if cfg["bf16"] is True else "fp32" if cfg["bf16"] is False else "bf16: auto"


def write_card(run_dir: Path, out_dir: Path, *, checkpoint: int | None = None, title: str | None = None) -> Path:
    """Build the model folder at ``out_dir`` (atomically) from ``run_dir``."""
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    source = run_dir / "final" if checkpoint is None else run_dir / "checkpoints" / f"step-{checkpoint:07d}"
    generator = load_model(source)
    step = int(generator.meta.get("step", 0))
    figures = training_figures(run_dir, step)
    figures["precision"] = generator.meta.get("precision")
    stats = generator_stats(generator)
    captions = figures["config"]["sample_captions"]
    name = title or out_dir.name
    with atomic_dir(out_dir, replace=True) as tmp:
        save_model(tmp, generator, {**generator.meta, "data": figures["config"]["data"], "name": name})
        grid = sample_grid(generator, captions, n=8, seed=0)
        save_grid(tmp / SAMPLES_FILE, grid.reshape(-1, *grid.shape[2:]), [f"{c} #{j}" for c in captions for j in range(8)],
                  columns=8, tile_px=64)
        if figures["config"]["data"]["name"] == "shapes":
            sweep = sample_grid(generator, list(ATTRIBUTE_SWEEP), n=6, seed=0)
            save_grid(tmp / SWEEP_FILE, sweep.reshape(-1, *sweep.shape[2:]),
                      [c for c in ATTRIBUTE_SWEEP for _ in range(6)], columns=6, tile_px=64)
        text = _card_text(name, run_dir, figures, stats, captions, quality(generator, figures["config"]["data"]))
        (tmp / CARD_FILE).write_text(text, encoding="utf-8")
        write_checksums(tmp)  # last: the sha256 of every file of the model folder
    return out_dir


def _quality_section(name: str, q: dict) -> str:
    model, real = q["model"], q["real"]
    rows = []
    if "kid" in model:
        rows += [f"| KID | {model['kid']['value']:.4f} ± {model['kid']['std']:.4f} | "
                 f"{real['kid']['value']:.4f} ± {real['kid']['std']:.4f} |",
                 f"| FID | {model['fid']['value']:.2f} | {real['fid']['value']:.2f} |"]
    else:
        rows.append(f"| KID, FID | not measured: {q['n']} eval captions, fewer than the {MIN_SAMPLES} they need | |")
    if "r_precision" in model:
        rows += [f"| R-precision (99 distractors, chance 0.01) | {model['r_precision']['value']:.3f} | "
                 f"{real['r_precision']['value']:.3f} |",
                 f"| caption similarity | {model['caption_similarity']['value']:.3f} | "
                 f"{real['caption_similarity']['value']:.3f} |"]
    elif q["data"]["name"] == "emoji":
        rows.append("| R-precision | not measured: the alignment encoder emoji32-align is not installed | |")
    if "diversity" in model:
        reference = model["diversity"].get("real_reference")
        share = f" ({model['diversity']['value'] / reference:.0%} of real)" if reference else ""
        rows.append(f"| diversity ({model['diversity']['n']} captions x {DIVERSITY_K} noises) | "
                    f"{model['diversity']['value']:.3f} ± {model['diversity'].get('stderr', 0):.3f}{share} | "
                    f"{f'{reference:.3f} (its other real drawings)' if reference else 'no reference'} |")
    for key, label in (("attr_accuracy", "all"), ("attr_accuracy_seen", "seen pairings"),
                       ("attr_accuracy_unseen_1obj", "unseen pairings, one object"),
                       ("attr_accuracy_unseen_2obj", "unseen pairings, two objects")):
        if key in model:
            rec = model[key]
            rows.append(f"| whole-object accuracy, {label} ({rec['objects']} objects) | {rec['value']:.3f} ± "
                        f"{rec['stderr']:.3f} | {real[key]['value']:.3f} |")
    if "attr_accuracy" in model:
        for key, value in model["attr_accuracy"]["per_attribute"].items():
            rows.append(f"| attribute accuracy: {key} | {value:.3f} | {real['attr_accuracy']['per_attribute'][key]:.3f} |")
    attr_note = ("\nAttribute accuracy: the analytic reader `compresskit.metrics.attribute_accuracy` on each image; "
                 "`object` (whole-object accuracy) needs colour, shape, size and position all right, `image` needs "
                 "every object right and nothing extra. *Unseen pairings*: eval captions with a (colour, shape) "
                 "pairing, or a pair of them, that no training image shows; ± is the binomial standard error over "
                 "objects.\n") if "attr_accuracy" in model else ""
    if "diversity" in model:
        attr_note += (f"\nDiversity: {DIVERSITY_K} noise samples of each of {model['diversity']['n']} fixed eval captions, "
                      "mean pairwise EfficientNet-Lite0 cosine distance (± s.e. over captions); the real reference is "
                      "the same measure over each caption's real drawings (emoji: its two art styles).\n")
    if "by_objects" in q:
        keys = list(model["attr_accuracy"]["per_attribute"])
        attr_note += ("\nBy the number of objects a caption asks for (the same images):\n\n"
                      f"| objects | n | {' | '.join(keys)} |\n|---|---|{'---|' * len(keys)}\n"
                      + "".join(f"| {k} | {row['n']} | {' | '.join(f'{row[a]:.3f}' for a in keys)} |\n"
                                for k, row in q["by_objects"].items()))
        attr_note += (f"\n`{SWEEP_FILE}`: one attribute changes per row against the first row (colour, shape, size, "
                      f"position), 6 noise seeds each. Reproduce: `compresskit generate "
                      f"{' '.join(json.dumps(c) for c in ATTRIBUTE_SWEEP)} --model {name} --n 6 --seed 0 -o {SWEEP_FILE}`."
                      f"\n\n![attribute sweep]({SWEEP_FILE})\n")
    return f"""
## Quality

One image per eval-split caption ({q['n']} captions, noise seed {q['seed']}) against the real *train* split
in EfficientNet-Lite0 feature space (1280-d, images upsampled to 128 px). KID is the mean ± std over
{KID_SUBSETS} random subsets (of half the eval captions, at most {KID_SUBSET_SIZE}); FID with fewer samples than feature dimensions is biased upwards and compares only at equal counts. The
right-hand column scores the real eval-split images the same way: the floor a perfect model reaches.
Reproduce: `compresskit eval --model {name}` and `compresskit eval --real --data {q['data']['name']}`.

| metric | {name} | real eval split |
|---|---|---|
{chr(10).join(rows)}
{attr_note}"""


def _objective(cfg: dict) -> str:
    text = (f"hinge loss with mismatched-caption negatives; matching-aware gradient penalty (weight "
            f"{cfg['gp_weight']}, power {cfg['gp_power']}, every {cfg['gp_every']} steps); generator EMA {cfg['ema_decay']}")
    if cfg.get("recon_weight"):
        text += f"; plus {cfg['recon_weight']} x MSE to the caption's real image"
        if cfg.get("recon_until"):
            text += f" (annealed linearly to {cfg.get('recon_floor') or 0:g} at step {cfg['recon_until']:,})"
    if cfg.get("diversity_weight"):
        text += (f"; plus mode seeking (DSGAN): {cfg['diversity_weight']} / (mean|G(z1)-G(z2)| / mean|z1-z2|) "
                 "over pairs of noises for one caption")
    return text


def _inputs_text(g: dict) -> str:
    text = (f"noise `z` ({g['z_dim']}-d) and\na caption vector `text` (384-d, unit-norm all-MiniLM-L6-v2, "
            "`compresskit.text.TextEncoder`)")
    if g.get("attention"):
        g = GeneratorConfig.model_validate(g)  # a training config written before these fields gets their defaults
        text += (f", plus the caption's MiniLM token states `tokens` ({g.token_length} x 384, zero-padded) "
                 f"and `token_mask`, read by cross-attention ({g.attn_heads} heads, width "
                 f"{g.attn_dim}) after the {' and '.join(f'{r}x{r}' for r in g.attention)} blocks")
    return text


def _card_text(name: str, run_dir: Path, fig: dict, stats: dict, captions: list[str], q: dict) -> str:
    cfg = fig["config"]
    data = cfg["data"]
    data_options = {k: v for k, v in DataConfig.model_validate(data).build_options().items() if v is not None}
    hours = fig["wall_seconds"] / 3600
    return f"""# {name}

A DF-GAN-style text-to-image generator trained by compresskit: {_inputs_text(cfg['generator'])} in, a
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
| precision | {_precision_text(cfg, fig.get("precision"))}, {"channels-last" if cfg['channels_last'] else "contiguous"} |

Wall time and images/s are summed from the run's `log.jsonl` (each record times the steps since the
previous one, including sampling and checkpoint writes). Windows where other work shared the two cores
run slower; the median window shows the undisturbed rate.

## Samples

`samples.png`: the run's sample captions, 8 samples each, noise seed 0 (column j uses the same noise in
every row). Reproduce: `compresskit generate {' '.join(json.dumps(c) for c in captions)} --model {name} --n 8 --seed 0 -o samples.png`.

![samples](samples.png)
{_quality_section(name, q)}
## Training config

```yaml
{yaml.safe_dump(cfg, sort_keys=False).strip()}
```
"""

