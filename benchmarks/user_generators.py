"""Every pass on generators the project was not designed for: a generator x pass table.

The five user-style generators of the tests (``tests/passes/user_generators.py``: DCGAN, pix2pix FiLM,
StyleGAN2, SAGAN, PixelShuffle), random seeded weights, each run through
sanitize -> prune 0.5 -> distil (student: the pruned model) -> ONNX -> OpenVINO -> INT8 -> bench (1 thread).
Run from the repository root: ``python -m benchmarks.user_generators [--distill-steps 60]``; prints markdown.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch
from safetensors.torch import save_file

from compresskit.bench.report import bench_run
from compresskit.recipe import parse_recipe
from compresskit.runner import run
from tests.passes import user_generators

STYLES = ["dcgan", "pix2pix_film", "stylegan2", "sagan", "pixelshuffle"]
SHAPES = {"name": "shapes", "n": 600, "size": 32, "seed": 5}
BENCH = {"candidates": ["prune", "distill", "quantize_nncf"],
         "speed": {"threads": [1], "batch_sizes": [1], "rounds": 5, "per_round": 20, "exported_teacher": True,
                   "probe": False},
         "quality": {"batch_size": 16}}


def one(style: str, folder: Path, distill_steps: int) -> dict:
    torch.manual_seed(0)
    model = getattr(user_generators, style)(z_dim=16, width=32)
    weights = folder / f"{style}.safetensors"
    save_file(model.state_dict(), str(weights))
    spec = {"factory": f"tests.passes.user_generators:{style}", "kwargs": {"width": 32, "z_dim": 16},
            "weights": str(weights), "z_dim": 16, "data": SHAPES}
    steps = [{"sanitize": {}}, {"prune": {"ratio": 0.5, "round_to": None}},
             {"distill": {"schedule": {"steps": distill_steps, "batch_size": 16, "captions": 256},
                          "validation": {"size": 32, "every": 10, "patience": 100}}},
             {"export_onnx": {}}, {"export_openvino": {}}, {"quantize_nncf": {"subset_size": 64}}]
    result = run(parse_recipe({"input": spec, "threads": 1, "steps": steps, "bench": BENCH}, f"{style}.yaml"),
                 folder / style)
    report = bench_run(folder / style)
    by_name = {c.name: c for c in report.candidates}
    _, prune, distill, onnx, openvino, int8 = (r.meta for r in result.steps)
    return {"style": style, "prune": prune, "distill": distill, "onnx": onnx, "openvino": openvino, "int8": int8,
            "latency": {n: c.value("latency_ms_p50") for n, c in by_name.items()},
            "speedup": by_name["quantize_nncf"].value("speedup_vs_baseline")}


def table(rows: list[dict]) -> str:
    lines = ["| generator | prune: params before -> after (MACs ratio) | kept whole (why) | distil val L1 start -> best "
             "| ONNX / OpenVINO parity (max abs) | INT8: MAC share, mean abs vs fp32 | p50 torch -> INT8 ms (x) |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        p, d, i = r["prune"], r["distill"], r["int8"]
        kept = "; ".join(f"{n} ({why.split(' (')[0]})" for n, why in p["kept_whole_why"].items()) or "none"
        lines.append(
            f"| {r['style']} | {p['before']['params']:,} -> {p['after']['params']:,} ({p['macs_ratio']:.2f}) | {kept} | "
            f"{d['val_l1_start']:.4f} -> {d['val_l1_best']:.4f} | {r['onnx']['parity_max_abs_error']:.1e} / "
            f"{r['openvino']['parity_max_abs_error']:.1e} | {i['int8_mac_share']:.2f}, {i['parity_mean_abs_error_vs_fp32']:.4f} | "
            f"{r['latency']['baseline']:.2f} -> {r['latency']['quantize_nncf']:.2f} ({r['speedup']:.1f}x) |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--distill-steps", type=int, default=60)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        print(table([one(style, Path(tmp), args.distill_steps) for style in STYLES]))


if __name__ == "__main__":
    main()
