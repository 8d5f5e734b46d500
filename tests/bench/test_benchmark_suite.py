"""The pytest-benchmark suite in benchmarks/ runs, times every backend, and can gate on a saved baseline."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


@pytest.mark.slow
def test_benchmark_suite_times_the_teacher_on_every_backend(tmp_path):
    out = tmp_path / "bench.json"
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "benchmarks/test_generators.py", "-q", "-p", "no:cacheprovider",
         "--model", "emoji32-tiny", "--threads", "1", "--work", str(tmp_path / "work"),
         f"--benchmark-json={out}", "--benchmark-disable-gc"],
        capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    found = json.loads(out.read_text())["benchmarks"]
    backends = sorted(b["extra_info"]["backend"] + ("-int8" if "int8" in b["name"] else "") for b in found)
    assert backends == ["onnxruntime", "openvino", "openvino-int8", "torch"]
    for b in found:
        assert b["stats"]["rounds"] == 60 and b["stats"]["median"] > 0 and b["extra_info"]["threads"] == 1
