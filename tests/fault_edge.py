"""The edge recipe's steps at test sizes, and what the fault tests (a full disk, SIGKILL) need around it.

Also a script (``python tests/fault_edge.py fill MOUNT RECIPE OUT.json PLAN``), run inside a private mount
namespace by ``test_faults.py``: it puts the run folder on a small tmpfs and makes the disk fill in each part of
the run in turn (``fill``), checking what each failure left (real ENOSPC, raised by torch, ONNX, OpenVINO, NNCF and
safetensors alike, not a mock).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

# README's edge recipe (recipes/edge-openvino-int8.yaml), step for step, at test sizes
EDGE_STEPS = [
    {"sanitize": {}},
    {"distill": {"student": {"kind": "slim", "width": 0.5, "convs_per_block": 1, "init": "teacher"},
                 "schedule": {"steps": 100, "batch_size": 8, "captions": 64},
                 "validation": {"size": 16, "every": 25, "checkpoint_every": 25, "patience": 100}}},
    {"export_onnx": {"fuse_conditioning": True}},
    {"export_openvino": {}},
    {"quantize_nncf": {"mode": "accuracy_control", "metric": "psnr_vs_teacher", "max_drop": 0.3, "subset_size": 16,
                       "validation_size": 8}},
    {"bundle": {"text_encoder": "int8", "text_layers": 2, "text_steps": 10, "subset_size": 8, "validation_size": 4,
                "max_drop": 0.05}},
]
# a bench that writes everything a real one does (the teacher's exports, the report, its plots) in seconds
TINY_BENCH = {"candidates": ["bundle"],
              "speed": {"threads": [1], "batch_sizes": [1], "rounds": 2, "per_round": 3, "warmup": 1, "warmup_s": 0,
                        "e2e": False, "probe": False, "peak": False},
              "quality": {"n": 8, "diversity_captions": 4, "candidates": []}}
ENV = {"OMP_NUM_THREADS": "1", "COLUMNS": "300"}


def edge_recipe(model: Path, steps: int = len(EDGE_STEPS), bench: bool = False) -> dict:
    return {"name": "tiny-edge", "seed": 0, "threads": 1, "input": {"model": str(model)},
            "steps": EDGE_STEPS[:steps], **({"bench": TINY_BENCH} if bench else {})}


def command(recipe: Path, out: Path, bench: bool = False) -> list[str]:
    return [sys.executable, "-m", "compresskit", "run", str(recipe), "--out", str(out),
            *([] if bench else ["--no-bench"])]


def payload(run_dir: Path) -> dict[str, dict[str, str]]:
    """Every finished artifact of a run (its steps and the bench's teacher exports) -> its files' sha256."""
    found = {}
    for folder in sorted([*(run_dir / "artifacts").glob("[0-9]*"), *(run_dir / "baselines").glob("[a-z]*")]):
        found[f"{folder.parent.name}/{folder.name}"] = json.loads((folder / "manifest.json").read_text())["files"]
    return found


def leftovers(run_dir: Path) -> list[str]:
    """Temporary files or folders a failed write left (every write goes through one, renamed when complete)."""
    return sorted(str(p.relative_to(run_dir)) for p in run_dir.rglob(".*")
                  if p.name not in (".lock",) and not p.name.startswith(".final"))


def intact(run_dir: Path) -> list[str]:
    """Problems with what a stopped run left: an artifact that fails its checksums, an unreadable report."""
    from compresskit.artifact import load_artifact
    from compresskit.bench.schema import Report

    problems = []
    for folder in [*(run_dir / "artifacts").glob("[0-9]*"), *(run_dir / "baselines").glob("[a-z]*")]:
        try:
            load_artifact(folder)
        except Exception as exc:  # noqa: BLE001 - reported, the test fails on it
            problems.append(f"{folder.name}: {exc}")
    for name in ("run.json", "report.json"):
        if (run_dir / name).exists():
            try:
                json.loads((run_dir / name).read_text())
            except ValueError as exc:
                problems.append(f"{name}: {exc}")
    if (run_dir / "report.json").exists():
        try:
            Report.load(run_dir)
        except Exception as exc:  # noqa: BLE001
            problems.append(f"report.json: {exc}")
    return problems


def _used(mount: Path) -> int:
    stat = os.statvfs(mount)
    return (stat.f_blocks - stat.f_bfree) * stat.f_frsize


def _resize(mount: Path, size: int) -> int:
    size = -(-size // 4096) * 4096
    subprocess.run(["mount", "-o", f"remount,size={size}", str(mount)], check=True)
    return size


def fill(mount: Path, recipe_file: Path, out: Path, plan: list[list]) -> None:
    """Make the disk fill in each part of the run in turn, then let that part finish, on a tmpfs at ``mount``.

    ``plan``: [[key, bytes, step number (0: the input, -1: the bench)], ...] in the order a run writes them: the parts of the run (the input's
    copy, each step's artifact, the bench's teacher exports, the bench's report) by the text the error line names
    them with, and their size in a run on a roomy disk (whole pages). For each part: the disk gets room for half of
    it, and ``compresskit run`` must stop there; a step then gets ample room with the recipe cut after it (a step's
    id is its chain's: the same ids), the bench's parts the room each needs. Every attempt's outcome goes to ``out``.
    """
    import yaml

    full = yaml.safe_load(Path(recipe_file).read_text())
    recipes = {}
    for _, _, number in plan:
        cut = {**{k: v for k, v in full.items() if k != "bench"}, "steps": full["steps"][:max(number, 1)]} \
            if number >= 0 else full
        recipes[number] = Path(out).with_name(f"recipe-{number}.yaml")
        recipes[number].write_text(yaml.safe_dump(cut))
    mount.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16k", "tmpfs", str(mount)], check=True)
    run_dir = mount / "run"
    attempts = []

    def attempt(number: int, size: int, aim: str) -> dict:
        size = _resize(mount, size)
        proc = subprocess.run(command(recipes[number], run_dir, bench=number < 0), capture_output=True, text=True,
                              env={**os.environ, **ENV}, timeout=900)
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        found = {"aim": aim, "size": size, "exit": proc.returncode, "errors": [x for x in lines if x.startswith("error:")],
                 "last_line": lines[-1] if lines else "", "leftovers": leftovers(run_dir),
                 "problems": intact(run_dir) if run_dir.exists() else [], "traceback": "Traceback" in proc.stderr}
        attempts.append(found)
        return found

    try:
        carried = 0  # room for the part before the one aimed at, not on the disk yet (no recipe stops after it)
        for key, size, number in plan:
            fill_here = attempt(number, _used(mount) + carried + max(size // 2, 4096), f"fill in {key}")
            for _ in range(3):  # a part that writes more on the way than it keeps: more room, it must fail there again
                if fill_here["exit"] == 0 or key in " ".join(fill_here["errors"]) or not fill_here["errors"]:
                    break
                carried += 64 * 1024
                fill_here = attempt(number, _used(mount) + carried + max(size // 2, 4096), f"fill in {key}")
            if number > 0:  # a step: room to finish it, the recipe cut after it
                attempt(number, _used(mount) + (64 << 20), f"finish {key}")
                carried = 0
            else:  # the input's copy (no recipe stops after it) and the bench's parts: room for it, the next fills
                carried = size + 16 * 1024
        attempt(-1, _used(mount) + (64 << 20), "finish the run")
        result = {"attempts": attempts, "payload": payload(run_dir) if attempts[-1]["exit"] == 0 else {}}
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)
    Path(out).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    if sys.argv[1] == "fill":
        fill(Path(sys.argv[2]), Path(sys.argv[3]), Path(sys.argv[4]), json.loads(sys.argv[5]))
