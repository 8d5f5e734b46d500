"""The ``compresskit`` command line: thin, parses options, calls the library, prints with rich.

Library errors (``CompresskitError``) become one line on stderr and exit code 2 (bad input) or 1
(a failed run), as do usage errors and interruptions (``cli_errors``); ``--json`` output goes to stdout
alone, progress and messages to stderr.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from . import __version__
from .cli_measure import TrustFactory, trust_factories
from .errors import ConfigError, DataError

app = typer.Typer(
    help="Shrink trained text-to-image generators for edge CPUs, and prove it with numbers.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
out = Console()
err = Console(stderr=True)


def _version(value: bool) -> None:
    if value:
        out.print(f"compresskit {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[bool | None, typer.Option("--version", callback=_version, is_eager=True)] = None,
) -> None:
    """compresskit: prune, distil, quantise and export generators; benchmark and gate releases."""


def _print_json(obj: object) -> None:
    typer.echo(json.dumps(obj, indent=2, ensure_ascii=False))


def _summary_table(title: str, summary: dict) -> Table:
    table = Table(title=title, show_header=False)
    for key, value in summary.items():
        if isinstance(value, dict):
            value = ", ".join(f"{k}={v}" for k, v in value.items())
        table.add_row(key, str(value))
    return table


@app.command()
def data(
    name: Annotated[str, typer.Argument(help="Dataset: emoji or shapes.")],
    size: Annotated[int, typer.Option(help="Image side in pixels (16, 32, 64, 128).")] = 32,
    n: Annotated[int | None, typer.Option("--n", help="shapes: number of images [default 10000].")] = None,
    seed: Annotated[int | None, typer.Option(help="shapes: generator seed [default 0].")] = None,
    max_objects: Annotated[int | None, typer.Option(help="shapes: most shapes per image [default 2].")] = None,
    styles: Annotated[
        str | None, typer.Option(help="emoji: comma-separated art styles [default: every installed one].")
    ] = None,
    skin_tones: Annotated[str | None, typer.Option(help="emoji: keep or drop skin-tone variants [keep].")] = None,
    eval_fraction: Annotated[
        float | None, typer.Option(help="emoji: share of base emoji with one style held out for eval [0.2].")
    ] = None,
    val_fraction: Annotated[
        float | None, typer.Option(help="emoji: share of base emoji with one style held out for val [0.1].")
    ] = None,
    rebuild: Annotated[bool, typer.Option(help="Rebuild even if the cache has it.")] = False,
    grid: Annotated[Path | None, typer.Option(help="Also write a labelled PNG grid of samples here.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON on stdout.")] = False,
) -> None:
    """Build (once, then cached) a captioned dataset and print its counts."""
    from .data import load_dataset  # lazy: CLI start-up

    options: dict = {"size": size, "rebuild": rebuild}
    per_dataset = {
        "shapes": {"n": n, "seed": seed, "max_objects": max_objects},
        "emoji": {"styles": styles, "skin_tones": skin_tones, "eval_fraction": eval_fraction,
                  "val_fraction": val_fraction},
    }
    for dataset, opts in per_dataset.items():
        for key, value in opts.items():
            if value is None:
                continue
            if dataset != name:
                raise DataError(f"--{key.replace('_', '-')} applies to the {dataset} dataset only; drop it")
            options[key] = value.split(",") if key == "styles" else value

    with Progress(
        TextColumn("[bold]building {task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=err, transient=True, disable=as_json or not err.is_terminal,
    ) as bar:
        task = bar.add_task(name, total=None)
        if name == "emoji":
            options["progress"] = lambda done, total: bar.update(task, completed=done, total=total)
        dataset = load_dataset(name, **options)
    summary = dataset.summary()
    if grid is not None:
        from .grid import save_grid  # lazy: CLI start-up

        pick = _preview_indices(dataset.captions, 32)
        labels = [f"{dataset.captions[i]} ({dataset.styles[i]}, {dataset.splits[i]})" for i in pick]
        try:
            summary["grid"] = str(save_grid(grid, dataset.images[pick], labels, label_lines=3))
        except OSError as exc:  # written to a temporary file first: nothing half-written is left
            raise DataError(f"cannot write {grid} ({exc.strerror or exc}); choose a path in a folder you can write") from None
    if as_json:
        _print_json(summary)
    else:
        out.print(_summary_table(f"{name} dataset", summary))


def _preview_indices(captions: list[str], count: int) -> list[int]:
    """Every image of a spread of captions, so a grid shows the styles side by side."""
    by_caption: dict[str, list[int]] = {}
    for i, caption in enumerate(captions):
        by_caption.setdefault(caption, []).append(i)
    names = list(by_caption)
    step = max(1, len(names) // count)
    picked: list[int] = []
    for caption in names[::step]:
        picked.extend(by_caption[caption])
        if len(picked) >= count:
            break
    return picked[:count]


@app.command()
def encode(
    captions: Annotated[list[str], typer.Argument(help="One or more captions.")],
    tokens: Annotated[bool, typer.Option(help="Also report token-level feature shapes.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print results (with vectors) as JSON.")] = False,
) -> None:
    """Embed captions with the pretrained MiniLM encoder (cached on disk)."""
    from .text import TextEncoder, check_captions  # lazy: CLI start-up

    check_captions(captions)  # fail before loading the model
    started = time.perf_counter()
    encoder = TextEncoder()
    vectors = encoder.encode(captions)
    result = {
        "model": encoder.model_id,
        "dim": int(vectors.shape[1]),
        "seconds": round(time.perf_counter() - started, 3),  # includes loading the model on a cache miss
        "cache": dict(encoder.stats),
        "cosine": (vectors @ vectors.T).round(decimals=4).tolist(),
    }
    if tokens:
        feats = encoder.encode_tokens(captions)
        result["token_counts"] = feats.mask.sum(1).tolist()
    if as_json:
        result["vectors"] = vectors.tolist()
        _print_json(result)
        return
    table = Table(title=f"cosine similarity, {result['dim']}-d MiniLM sentence vectors")
    table.add_column("caption")
    for i in range(len(captions)):
        table.add_column(f"cos #{i}", justify="right")
    for i, caption in enumerate(captions):
        table.add_row(f"#{i} {caption}", *[f"{c:.3f}" for c in result["cosine"][i]])
    out.print(table)
    out.print(f"model {result['model']}; {result['seconds']} s; cache {result['cache']}")


@app.command("refit-disc")
def refit_disc(
    config: Annotated[Path, typer.Argument(help="The generator's training YAML (see recipes/train/).")],
    model: Annotated[str, typer.Option(help="Shipped model name or checkpoint folder (frozen).")],
    out: Annotated[Path, typer.Option(help="Folder for the model with its discriminator (replaced whole).")],
    steps: Annotated[int, typer.Option(min=1, max=10_000_000, help="Discriminator steps.")] = 1500,
) -> None:
    """Fit a discriminator to a trained generator that ships none (distillation may start its adversarial term
    from it); writes the model folder again with discriminator.safetensors, checksummed."""
    from .train import load_train_config  # lazy: CLI start-up
    from .train.refit import refit_discriminator  # lazy: CLI start-up

    cfg = load_train_config(config)
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[stats]}"), TimeElapsedColumn())
    with Progress(*columns, console=err) as bar:
        task = bar.add_task(f"discriminator for {model}", total=steps, stats="")
        found = refit_discriminator(cfg, model, out, steps, progress=lambda done, total, stats: bar.update(
            task, completed=done, stats=f"D {stats['loss_d']:.3f}  real {stats['d_real']:+.2f}  fake {stats['d_fake']:+.2f}"))
    err.print(f"discriminator fitted in {found['seconds']:.0f} s ({steps} steps): {out}")


@app.command()
def train(
    config: Annotated[Path, typer.Argument(help="Training YAML (see recipes/train/).")],
    out: Annotated[Path | None, typer.Option(help="Run folder [default: runs/train/<name>].")] = None,
    resume: Annotated[bool, typer.Option(help="Continue from the run folder's last checkpoint.")] = False,
    nproc_per_node: Annotated[int, typer.Option(min=1, max=1024, help=(
        "Launch this many processes on this machine with torchrun (DDP); batch_size stays the global batch."))] = 1,
    timeout: Annotated[int, typer.Option(min=10, max=86_400, help=(
        "Seconds a process waits for the others in a collective before the job fails (distributed runs)."))] = 600,
) -> None:
    """Train a text-to-image GAN; checkpoints, sample grids and a log land in the run folder.

    Runs in one process, or as every rank of a torchrun job (torchrun --nproc-per-node N -m compresskit train ...).
    """
    from .train import load_train_config  # lazy: CLI start-up
    from .train import train as run_training  # lazy: CLI start-up
    from .train.distributed import World, launch_rank, launched_by_torchrun, torchrun  # lazy: CLI start-up

    cfg = load_train_config(config)
    out = out or Path("runs") / "train" / cfg.name
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file; give a folder for the training run (it is created if missing)")
    if nproc_per_node > 1 and not launched_by_torchrun():
        from .train.loop import existing_checkpoint  # lazy: CLI start-up

        World(size=nproc_per_node).per_rank_batch(cfg.batch_size)  # bad input fails here, not in N processes
        existing_checkpoint(out, resume)
        torchrun(nproc_per_node, ["train", str(config), "--out", str(out), "--timeout", str(timeout),
                                  *(["--resume"] if resume else [])])
        return
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[stats]}"), TimeElapsedColumn())
    is_main = launch_rank() == 0
    with Progress(*columns, console=err, disable=not is_main) as bar:
        task = bar.add_task(f"train {cfg.name}", total=cfg.steps, stats="")

        def on_log(record: dict) -> None:
            stats = (f"{record['images_per_s']:.1f} img/s  D {record['loss_d']:.3f}  "
                     f"G {record['loss_g']:.3f}  mse {record['mse']:.3f}")
            bar.update(task, completed=record["step"], stats=stats)

        result = run_training(cfg, out, resume=resume, on_log=on_log, timeout_s=timeout)
    if is_main:
        processes = f", {os.environ['WORLD_SIZE']} processes" if launched_by_torchrun() else ""
        err.print(
            f"trained {cfg.name}: steps {result.resumed_from}->{result.steps} in {result.seconds:.0f} s "
            f"({result.images_per_second:.1f} images/s{processes}); generator: {result.final_dir}"
        )


@app.command()
def generate(
    captions: Annotated[list[str], typer.Argument(help="One or more captions (one grid row each).")],
    model: Annotated[str, typer.Option(help="Shipped model name, checkpoint folder, bundle folder, or a run folder "
                                            "(RUN_DIR or RUN_DIR/final: its last step).")] = "emoji32-v3",
    n: Annotated[int, typer.Option("--n", min=1, max=64, help="Images per caption.")] = 8,
    seed: Annotated[int, typer.Option(help="Noise seed (column j uses the same noise in every row).")] = 0,
    output: Annotated[Path, typer.Option("-o", "--output", help="Grid PNG to write.")] = Path("grid.png"),
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON summary on stdout.")] = False,
    trust_factory: TrustFactory = None,
) -> None:
    """Generate a labelled grid: one row per caption, n samples per row.

    A bundle (the ``bundle`` step's folder, or a run that ends with one) runs without torch: its own tokenizer,
    text encoder and generator; its noise comes from numpy, so its images differ from a checkpoint's for one seed.
    """
    from .grid import save_grid  # lazy: CLI start-up
    from .runtimes.bundle import find_bundle  # lazy: CLI start-up
    from .text.captions import check_captions  # lazy: CLI start-up

    trust_factories(trust_factory)
    check_captions(captions)
    if output.is_dir():
        raise DataError(f"-o {output} is a folder; give the grid's file name, like {output / 'grid.png'}")
    folder = _run_final(Path(model)) if Path(model).is_dir() else Path(model)
    bundle_dir = find_bundle(folder)
    started = time.perf_counter()
    if bundle_dir is not None:
        from .runtimes.bundle import Bundle  # lazy: CLI start-up

        images, folder = Bundle(bundle_dir).generate_grid(captions, n=n, seed=seed), bundle_dir
    else:
        from .generate import generate as run_generate  # lazy: CLI start-up
        from .models import resolve_model_dir  # lazy: CLI start-up

        folder = resolve_model_dir(folder if folder.is_dir() else model)
        images = run_generate(folder, captions, n=n, seed=seed).images
    seconds = time.perf_counter() - started
    flat = images.reshape(-1, *images.shape[2:])
    labels = [f"{c} #{j}" for c in captions for j in range(n)]
    try:
        save_grid(output, flat, labels, columns=n, tile_px=64, label_lines=2)
    except OSError as exc:  # written to a temporary file first: nothing half-written is left
        raise DataError(f"cannot write {output} ({exc.strerror or exc}); choose a path in a folder you can write") from None
    summary = {
        "model": str(folder), "runtime": "bundle" if bundle_dir is not None else "torch", "captions": captions,
        "n": n, "seed": seed, "image_size": int(images.shape[2]), "grid": str(output), "seconds": round(seconds, 3),
    }
    if as_json:
        _print_json(summary)
    else:
        err.print(f"wrote {output}: {len(captions)} caption(s) x {n} at {summary['image_size']} px ({seconds:.2f} s, "
                  f"{summary['runtime']})")


def _run_final(folder: Path) -> Path:
    """A run folder (it has run.json) -> its last step's artifact; any other folder as it is."""
    from .runner import FINAL  # lazy: CLI start-up

    if not (folder / "run.json").is_file():
        return folder
    if not (folder / FINAL).is_dir():
        raise DataError(f"{folder} is a run whose steps did not all finish (no {FINAL}); rerun compresskit run "
                        "to complete it, or pass a step's artifact folder")
    return folder / FINAL


@app.command()
def info(
    model: Annotated[str, typer.Argument(help="Shipped model name or checkpoint folder.")] = "emoji32-v3",
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON on stdout.")] = False,
    trust_factory: TrustFactory = None,
) -> None:
    """Params, MACs per image, widths and training metadata of a generator."""
    trust_factories(trust_factory)
    from .models import load_model, resolve_model_dir  # lazy: CLI start-up
    from .models.stats import generator_stats  # lazy: CLI start-up

    folder = resolve_model_dir(model)
    generator = load_model(folder)
    summary = {"model": str(folder), **generator_stats(generator), "meta": generator.meta}
    if as_json:
        _print_json(summary)
    else:
        out.print(_summary_table(f"generator {model}", summary))


@app.command()
def passes(as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False) -> None:
    """List the compression passes (built-in and from plugins) with a one-line description."""
    from .registry import describe_passes, plugin_clashes  # lazy: CLI start-up

    rows = describe_passes()
    if as_json:
        _print_json(rows)
        return
    table = Table(title="passes")
    for column in ("name", "takes", "makes", "needs", "reports", "from", "about"):
        table.add_column(column)
    for row in rows:
        table.add_row(row["name"], "/".join(row["accepts"]), row["produces"], ", ".join(row["needs"]),
                      ", ".join(row["metrics"]), row["from"], row["about"])
    out.print(table)
    for clash in plugin_clashes():
        out.print(f"note: {clash}")


@app.command("eval")
def eval_command(
    model: Annotated[str | None, typer.Option(help="Shipped model name or checkpoint folder.")] = None,
    real: Annotated[bool, typer.Option("--real", help="Score the real images of the split instead (the floor).")] = False,
    teacher: Annotated[str | None, typer.Option(help="Teacher to compare with (PSNR, SSIM, perceptual).")] = None,
    data: Annotated[str | None, typer.Option(help="emoji or shapes [default: the model's own dataset].")] = None,
    n: Annotated[int | None, typer.Option("--n", help="Captions of the split to use [default: all].")] = None,
    split: Annotated[str, typer.Option(help="eval (report, gate) or val (tune on it).")] = "eval",
    seed: Annotated[int, typer.Option(help="Noise seed of the generated images.")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the metrics as JSON on stdout.")] = False,
    trust_factory: TrustFactory = None,
) -> None:
    """Quality of a generator (or of real held-out images): KID, FID, attributes, diversity, fidelity to a teacher."""
    trust_factories(trust_factory)
    from .data.config import DEFAULT_DATA  # lazy: CLI start-up
    from .metrics.evaluate import eval_set, evaluate, model_data  # lazy: CLI start-up
    from .models import load_model, resolve_model_dir  # lazy: CLI start-up
    from .models.sampling import generate_diversity, generate_for  # lazy: CLI start-up

    if real == (model is not None):
        raise DataError("give exactly one of --model NAME_OR_DIR and --real")
    if data is not None and data not in DEFAULT_DATA:
        raise DataError(f"--data must be one of {', '.join(DEFAULT_DATA)}, got {data!r}")
    generator = load_model(resolve_model_dir(model)) if model else None
    teacher_model = load_model(resolve_model_dir(teacher)) if teacher else None
    if teacher_model is not None and generator is None:
        raise DataError("--teacher needs --model (the student to compare with it)")
    data_config = DEFAULT_DATA[data] if data else model_data(generator) if generator else DEFAULT_DATA["emoji"]
    started = time.perf_counter()
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=err, transient=True) as bar:
        tasks: dict[str, int] = {}

        def progress(name: str, done: int, total: int) -> None:
            if name not in tasks:
                tasks[name] = bar.add_task(name, total=total)
            bar.update(tasks[name], completed=done)

        evalset = eval_set(data_config, n, split)
        diversity_images = None
        if generator is None:
            images = evalset.real_eval
        else:
            images = generate_for(generator, evalset.captions, seed=seed,
                                  progress=lambda done: progress("generate", done, len(evalset.captions)))
            diversity_images = generate_diversity(generator, evalset, seed=seed)
        teacher_images = None
        if teacher_model is not None:
            teacher_images = generate_for(teacher_model, evalset.captions, seed=seed,
                                          progress=lambda done: progress("teacher", done, len(evalset.captions)))
        metrics = evaluate(images, evalset, teacher_images=teacher_images, diversity_images=diversity_images,
                           seed=seed, progress=progress)
    result = {"model": model or f"real {split} split", "teacher": teacher, "data": evalset.data, "split": split,
              "seed": seed,
              "seconds": round(time.perf_counter() - started, 1), "metrics": metrics}
    if as_json:
        _print_json(result)
        return
    table = Table(title=f"quality of {result['model']} ({evalset.data['name']}, {len(images)} {split} captions)")
    for column in ("metric", "value", "n", "spread / detail"):
        table.add_column(column)
    for name, m in metrics.items():
        detail = f"std {m['std']:.5f} over {m['subsets']} subsets of {m['subset_size']}" if "std" in m else ""
        if "per_attribute" in m:
            detail = f"{m['objects']} objects; " + ", ".join(f"{k} {v:.3f}" for k, v in m["per_attribute"].items())
        if "samples_per_caption" in m:
            detail = f"captions x {m['samples_per_caption']} samples, stderr {m['stderr']:.4f}"
        table.add_row(name, f"{m['value']:.5g}", str(m["n"]), detail)
    out.print(table)


@app.command()
def align(
    out: Annotated[Path, typer.Option(help="Folder for the encoder (config, weights, card).")] = Path("runs/emoji32-align"),
    epochs: Annotated[int, typer.Option(min=1, help="Passes over the emoji train split.")] = 40,
    seed: Annotated[int, typer.Option(help="Seed of init, order and augmentation.")] = 0,
    limit: Annotated[int | None, typer.Option(min=1, help="First N emoji only (quick checks).")] = None,
) -> None:
    """Train the text-image alignment encoder (emoji32-align) and score it on real images."""
    from .metrics.align_train import train_aligner  # lazy: CLI start-up

    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("{task.fields[stats]}"), TimeElapsedColumn(), console=err) as bar:
        task = bar.add_task("align", total=epochs, stats="")
        figures = train_aligner(out, epochs=epochs, seed=seed, limit=limit,
                                progress=lambda e, total, loss: bar.update(task, completed=e, stats=f"loss {loss:.3f}"))
    real = figures["real_eval"]
    err.print(f"wrote {out}: R-precision on the real eval split {real['r_precision']:.3f} "
              f"(chance {figures['chance']:.2f}), shuffled captions "
              f"{figures['real_eval_shuffled_captions']['r_precision']:.3f}; {figures['train_seconds']} s")


@app.command()
def card(
    run_dir: Annotated[Path, typer.Argument(help="A training run folder (compresskit train --out).")],
    out: Annotated[Path, typer.Option(help="Model folder to write (config, weights, samples, card).")],
    checkpoint: Annotated[int | None, typer.Option(help="Step of a checkpoint [default: final/].")] = None,
) -> None:
    """Package a training run as a model folder with a measured MODEL_CARD.md and sample grid."""
    from .models.card import write_card  # lazy: CLI start-up

    folder = write_card(run_dir, out, checkpoint=checkpoint)
    err.print(f"wrote {folder} (config.json, model.safetensors, samples.png, MODEL_CARD.md)")


from .cli_measure import register  # noqa: E402  (run, bench, gate, compare live there)

register(app)
from .cli_search import search  # noqa: E402

app.command()(search)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: one line and an exit code for every error (``cli_errors``)."""
    from .cli_errors import run_app  # lazy: CLI start-up

    run_app(app, argv)
