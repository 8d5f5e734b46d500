"""pytest-benchmark suite options: which model, which run folders, how many threads.

    python -m pytest benchmarks/ --benchmark-only                        # the teacher on every backend
    python -m pytest benchmarks/ --runs runs/edge-openvino-int8 ...      # + every artifact of those runs

``--model`` (default emoji32-base) is exported to ONNX, OpenVINO IR and INT8 once, through the same
passes a recipe uses, into ``--work`` (default runs/benchmarks; finished steps are reused next time).
"""

from __future__ import annotations

import json
from pathlib import Path


def pytest_addoption(parser):
    group = parser.getgroup("compresskit")
    group.addoption("--model", default="emoji32-base", help="Teacher to time on every backend [emoji32-base].")
    group.addoption("--runs", nargs="*", default=[], help="Run folders (compresskit run) whose artifacts to time.")
    group.addoption("--threads", type=int, default=2, help="Intra-op threads of every runtime [2].")
    group.addoption("--batch", type=int, default=1, help="Batch size of the timed call [1].")
    group.addoption("--work", default="runs/benchmarks", help="Folder for the teacher's exports [runs/benchmarks].")


def _run_artifacts(run_dirs: list[str]) -> list[tuple[str, str]]:
    """(label, artifact folder) of every finished step of the given runs."""
    found = []
    for run_dir in run_dirs:
        summary = json.loads((Path(run_dir) / "run.json").read_text("utf-8"))
        name = summary["recipe"]["name"]
        for step in summary["steps"]:
            if step["status"] != "failed":
                folder = Path(run_dir) / "artifacts" / Path(step["path"]).name  # relative to the run folder
                found.append((f"{name}/{step['step']:02d}-{step['name']}", str(folder)))
    return found


def pytest_generate_tests(metafunc):
    if "run_artifact" in metafunc.fixturenames:
        pairs = _run_artifacts(metafunc.config.getoption("--runs"))
        metafunc.parametrize("run_artifact", [p[1] for p in pairs], ids=[p[0] for p in pairs])
