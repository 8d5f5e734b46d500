"""``python -m compresskit.bench.probe ARTIFACT_DIR THREADS``: one fresh process, one artifact.

Prints {"first_inference_ms", "peak_rss_mb", "baseline_rss_mb"}: the time from before loading the
runtime to the end of the first batch-1 call, and the process's peak resident memory (Linux ru_maxrss)
after it; ``baseline_rss_mb`` is the peak before loading, i.e. what Python + imports cost.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from pathlib import Path


def main(folder: str, threads: str) -> None:
    from ..artifact import load_artifact
    from ..passes.parity import parity_inputs
    from ..runtimes import load_runtime

    artifact = load_artifact(Path(folder))
    inputs = parity_inputs(artifact.io, 1, 0)
    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    started = time.perf_counter()
    runtime = load_runtime(artifact, int(threads) or None)
    runtime(inputs)
    first_ms = (time.perf_counter() - started) * 1000.0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    # the subprocess protocol: one JSON line on stdout, read by bench.speed.probe
    sys.stdout.write(json.dumps({"first_inference_ms": first_ms, "peak_rss_mb": peak, "baseline_rss_mb": baseline}) + "\n")


if __name__ == "__main__":
    main(*sys.argv[1:3])
