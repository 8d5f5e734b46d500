"""Time generators per backend with pytest-benchmark (batch ``--batch``, ``--threads`` threads).

The teacher (``--model``) runs in torch eager fp32 (the baseline), and as exported ONNX (onnxruntime),
OpenVINO IR and NNCF INT8 IR (default settings); ``--runs`` adds every artifact of finished recipe runs.
Each runs as deployed (``compresskit.runtimes.Deployment``: static shapes, latency hint at batch 1). Save a baseline
and fail a later run that is slower, see benchmarks/README.md.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from compresskit.artifact import load_artifact
from compresskit.passes.parity import parity_inputs
from compresskit.recipe import parse_recipe
from compresskit.runner import run
from compresskit.runtimes import Deployment, load_runtime

TEACHER_STEPS = [{"sanitize": {}}, {"export_onnx": {}}, {"export_openvino": {}}, {"quantize_nncf": {}}]
LABELS = {"sanitize": "torch-fp32", "export_onnx": "onnxruntime-fp32", "export_openvino": "openvino-fp32",
          "quantize_nncf": "openvino-int8"}


@pytest.fixture(scope="session")
def teacher_artifacts(pytestconfig) -> dict[str, Path]:
    model = pytestconfig.getoption("--model")
    recipe = parse_recipe({"name": f"bench-{model}", "input": {"model": model}, "steps": TEACHER_STEPS},
                          "benchmarks/test_generators.py")
    result = run(recipe, Path(pytestconfig.getoption("--work")) / Path(model).name)
    return {LABELS[s.name]: Path(s.path) for s in result.steps}


def _time(benchmark, folder: Path, pytestconfig) -> None:
    threads, batch = pytestconfig.getoption("--threads"), pytestconfig.getoption("--batch")
    artifact = load_artifact(folder)
    deploy = Deployment(threads=threads, batch=batch, hint="latency" if batch == 1 else "throughput")
    runtime = load_runtime(artifact, deploy=deploy)  # as deployed: static shapes, performance hint
    inputs = parity_inputs(artifact.io, batch, 0)
    benchmark.extra_info.update({"backend": runtime.backend, "threads": threads, "batch": batch,
                                 "artifact_id": artifact.id, "format": artifact.format, "runtime": runtime.settings})
    images = benchmark.pedantic(runtime, args=(inputs,), rounds=60, iterations=1, warmup_rounds=5)
    assert images.shape[0] == batch and images.shape[1] == 3


@pytest.mark.parametrize("backend", list(LABELS.values()))
def test_teacher(benchmark, teacher_artifacts, backend, pytestconfig):
    benchmark.group = f"teacher {pytestconfig.getoption('--model')}"
    _time(benchmark, teacher_artifacts[backend], pytestconfig)


def test_run_artifact(benchmark, run_artifact, pytestconfig):
    benchmark.group = "recipe runs"
    _time(benchmark, Path(run_artifact), pytestconfig)
