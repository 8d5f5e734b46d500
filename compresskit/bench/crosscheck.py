"""Cross-check a batch-1 latency with OpenVINO's own tool, ``benchmark_app`` (installed with the wheel).

    p50_ms, command = benchmark_app_p50(Path("model.xml"), {"z": [1, 100], "text": [1, 384]}, threads=2)

The scenario is pinned to what compresskit's harness runs for a latency figure: the same IR, static
shapes, one stream, ``threads`` inference threads, the same inference precision, synchronous calls.
(benchmark_app refuses ``-nthreads`` next to a performance hint, so the LATENCY hint's one stream is
spelled out as ``-hint none -nstreams 1``.) Its "Median" line is the figure read.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

from ..errors import CompresskitError
from ..lock import measuring

MEDIAN = re.compile(r"Median:\s+([0-9.]+)\s+(us|ms)")


class CrossCheckFailed(CompresskitError):
    exit_code = 1


def static_shapes(io: dict, batch: int = 1) -> dict[str, list[int]]:
    """The io spec's inputs at a fixed batch: {"z": [1, 100], "text": [1, 384]}."""
    return {name: [batch, *spec["shape"][1:]] for name, spec in io["inputs"].items()}


def benchmark_app_command(xml: Path, shapes: dict[str, list[int]], threads: int, precision: str = "f32",
                          seconds: int = 10) -> list[str]:
    found = shutil.which("benchmark_app") or str(Path(sys.executable).parent / "benchmark_app")
    shape = ",".join(f"{name}[{','.join(str(d) for d in dims)}]" for name, dims in shapes.items())
    return [found, "-m", str(xml), "-d", "CPU", "-hint", "none", "-nstreams", "1", "-nthreads", str(threads),
            "-api", "sync", "-shape", shape, "-infer_precision", precision, "-t", str(seconds)]


def parse_median_ms(output: str) -> float:
    """The "Median" latency of benchmark_app's console report, in ms (it prints µs below 1 ms)."""
    found = MEDIAN.search(output)
    if not found:
        raise CrossCheckFailed("benchmark_app printed no Median latency: " + (output.strip().splitlines() or ["no output"])[-1])
    value, unit = float(found.group(1)), found.group(2)
    return value / 1000.0 if unit == "us" else value


def benchmark_app_p50(xml: Path, shapes: dict[str, list[int]], threads: int, precision: str = "f32",
                      seconds: int = 10) -> tuple[float, str]:
    """(median ms, the command line) of benchmark_app on ``xml`` in the pinned latency scenario."""
    command = benchmark_app_command(xml, shapes, threads, precision, seconds)
    try:
        with measuring():  # its timing runs alone on the machine, like compresskit's own
            done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 300)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise CrossCheckFailed(f"benchmark_app could not run ({exc}); it comes with `pip install openvino`") from None
    if done.returncode != 0:
        last = (done.stdout + done.stderr).strip().splitlines() or ["no output"]
        raise CrossCheckFailed(f"benchmark_app failed on {xml}: {last[-1][:300]}")
    return parse_median_ms(done.stdout), " ".join(command)
