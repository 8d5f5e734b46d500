"""Which student forms are fast enough, chosen by latency measured on this CPU (not by MACs alone).

At 32 px and batch 1 a generator's small layers leave most of a CPU's vector units idle, and every layer
costs a fixed overhead, so MACs predict latency badly. This script builds each student form of a teacher
with random weights (speed does not depend on them): the recipe passes ``distill`` (one step, ``student:
slim``) -> ``export_onnx`` -> ``export_openvino`` -> ``quantize_nncf`` (16 calibration pairs), then times
every INT8 IR, the teacher's plain NNCF INT8 IR and the teacher in torch eager fp32 with the bench harness
(each in a worker process of its own, one busy at a time, seeded random order per round; batch 1, static
shape, LATENCY hint, ``--threads`` threads) and prints MACs, params, p50 and both speedups. ``--fuse no,yes``
times each form exported plain and with its fusion MLPs merged (``export_onnx: {fuse_conditioning: true}``;
default: merged, as the edge recipe exports).

    python benchmarks/student_latency.py --model emoji32-v3 --threads 2 --out runs/student-latency

Forms: ``width`` (every channel width times it, or ``0.5/0.5/0.25/0.25``: one factor per stage), ``convs`` (3x3
convs per block, 1 or 2), ``separable`` (depthwise 3x3 + pointwise 1x1); of a token-conditioned teacher,
``--tokens`` (the cross-attention resolutions and token-transformer layers kept: ``all``, or ``8:0`` = attention
at 8 px only, no token layers; ``8+16:1``). Builds are cached in ``--out`` (re-running re-times only)::

    python benchmarks/student_latency.py --model shapes32-v2 --widths 0.25 --convs 1 --separable no \
        --tokens all,8+16:1,8+16:0,8:1,8:0,16:1 --out runs/student-latency-shapes
"""

from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path

import numpy as np

from compresskit.bench.harness import WorkerPool
from compresskit.bench.speed import percentiles
from compresskit.recipe import parse_recipe
from compresskit.runner import run
from compresskit.runtimes import Deployment

WIDTHS = (0.125, 0.1875, 0.25, 0.375, 0.5)


def width_label(width: float | list[float], sep: str = "/") -> str:
    return sep.join(f"{w:g}" for w in width) if isinstance(width, list) else f"{width:g}"


def tokens_form(text: str) -> dict:
    """``all`` -> {} (the teacher's token path); ``8+16:1`` -> {attention: [8, 16], token_layers: 1}."""
    if text == "all":
        return {}
    resolutions, _, layers = text.partition(":")
    return {"attention": [int(r) for r in resolutions.split("+")], "token_layers": int(layers or 0)}


def tokens_label(form: dict, sep: str = " ") -> str:
    if "attention" not in form:
        return ""
    return f"{sep}a{'+'.join(map(str, form['attention']))}{sep}t{form['token_layers']}"


def build(model: str, form: dict, out: Path, fuse: bool = False) -> tuple[Path, dict]:
    """(the INT8 IR's folder, the distill step's meta) of one student form; ``fuse``: exported with its
    fusion MLPs merged (``export_onnx: {fuse_conditioning: true}``, as the edge recipe does)."""
    name = f"w{width_label(form['width'], '_')}-c{form['convs_per_block']}-{'sep' if form['separable'] else 'full'}"
    name += tokens_label(form, "-")
    name += "-fused" if fuse else ""
    steps = [{"distill": {"student": {"kind": "slim", **form}, "schedule": {"steps": 1, "batch_size": 2, "captions": 8},
                          "validation": {"size": 8, "every": 1}}},
             {"export_onnx": {"fuse_conditioning": fuse}}, {"export_openvino": {}},
             {"quantize_nncf": {"subset_size": 16}}]
    raw = {"name": name, "input": {"model": model}, "seed": 0, "threads": 2, "steps": steps}
    result = run(parse_recipe(raw, f"{name}.yaml"), out / name)
    return result.final.path, result.steps[0].meta


def teacher_int8(model: str, out: Path) -> tuple[Path, Path]:
    """(the teacher's torch folder, its plain NNCF INT8 IR folder) through the recipe passes, default settings."""
    raw = {"name": "teacher", "input": {"model": model}, "seed": 0, "threads": 2,
           "steps": [{"export_onnx": {}}, {"export_openvino": {}}, {"quantize_nncf": {}}]}
    result = run(parse_recipe(raw, "teacher.yaml"), out / "teacher")
    return result.input.path, result.final.path


def time_all(folders: dict[str, Path], threads: int, rounds: int, per_round: int) -> dict[str, dict]:
    deploy = Deployment(threads=threads, batch=1, hint="latency")
    names = list(folders)
    block = {"op": "latency", "key": "b1", "batch": 1, "warmup": 2, "warmup_s": 0.05, "calls": per_round}
    with WorkerPool(names) as pool:
        pool.load("b1", {n: (folders[n], deploy) for n in names})
        pool.rounds({n: {**block, "warmup": 20, "warmup_s": 1.0, "calls": 1} for n in names}, rounds=1, seed=0)
        answers = pool.rounds({n: block for n in names}, rounds=rounds, seed=0)
    return {n: percentiles([ms for a in answers[n] for ms in a["ms"]]) for n in names}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="emoji32-v3")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--per-round", type=int, default=20)
    parser.add_argument("--widths", default=",".join(str(w) for w in WIDTHS))
    parser.add_argument("--convs", default="1,2")
    parser.add_argument("--separable", default="no,yes")
    parser.add_argument("--tokens", default="all", help="token-conditioned teachers: attention resolutions and "
                        "token layers kept, e.g. all,8:0,8+16:1")
    parser.add_argument("--fuse", default="yes", help="export with the fusion MLPs merged: no, yes or no,yes")
    parser.add_argument("--out", type=Path, default=Path("runs/student-latency"))
    args = parser.parse_args()

    teacher_torch, teacher_ir = teacher_int8(args.model, args.out)
    folders = {"teacher (torch fp32)": teacher_torch, "teacher int8": teacher_ir}
    meta = {}
    # "0.25" scales every stage; "0.5/0.5/0.25/0.25" gives one factor per stage (stem, then each block's output)
    widths = [[float(f) for f in w.split("/")] if "/" in w else float(w) for w in args.widths.split(",")]
    convs_options = [int(c) for c in args.convs.split(",")]
    separable_options = [s == "yes" for s in args.separable.split(",")]
    fuse_options = [f == "yes" for f in args.fuse.split(",")]
    token_options = [tokens_form(t) for t in args.tokens.split(",")]
    for width, convs, separable, tokens, fuse in itertools.product(widths, convs_options, separable_options,
                                                                   token_options, fuse_options):
        form = {"width": width, "convs_per_block": convs, "separable": separable, **tokens}
        folder, found = build(args.model, form, args.out, fuse)
        name = f"w{width_label(width)} c{convs}{' sep' if separable else ''}{tokens_label(tokens)}"
        name += " fused" if fuse else ""
        folders[name], meta[name] = folder, found
    timed = time_all(folders, args.threads, args.rounds, args.per_round)
    torch_ms, int8_ms = timed["teacher (torch fp32)"]["p50"], timed["teacher int8"]["p50"]
    teacher_macs = next(iter(meta.values()))["teacher_macs"]
    teacher_params = next(iter(meta.values()))["teacher_params"]
    rows = []
    print("| student (INT8 IR) | params | MMACs | MACs vs teacher | p50 ms | vs torch teacher | vs teacher int8 |")
    print("|---|---|---|---|---|---|---|")
    for name, p in timed.items():
        m = meta.get(name, {})
        macs = m.get("student_macs", teacher_macs)
        print(f"| {name} | {m.get('student_params', teacher_params):,} | {macs / 1e6:.1f} | "
              f"{teacher_macs / macs:.1f}x | {p['p50']:.3f} | {torch_ms / p['p50']:.1f}x | {int8_ms / p['p50']:.2f}x |")
        rows.append({"name": name, "macs": macs, "p50_ms": p["p50"], "iqr_ms": p["iqr"], "n": p["n"]})
    (args.out / "latency.json").write_text(json.dumps({"threads": args.threads, "rows": rows}, indent=1) + "\n")
    print(f"\n{args.threads} thread(s); p50 over {args.rounds} rounds x {args.per_round} calls per case "
          f"(median IQR {np.median([r['iqr_ms'] for r in rows]):.3f} ms)")


if __name__ == "__main__":
    main()
