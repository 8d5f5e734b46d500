"""``python -m compresskit.bench.probe ARTIFACT_DIR DEPLOYMENT_JSON``: one fresh process, one artifact.

Prints {"first_inference_ms", "peak_rss_mb", "baseline_rss_mb"}: the time from before loading the
runtime (importing its library included) to the end of the first batch-1 call, and the process's peak
resident memory after it; ``baseline_rss_mb`` is the peak before loading, i.e. what Python + imports cost.
A bundle's first call is the whole caption -> image path (tokenizer, text encoder, generator), and
``torch_imported`` says whether torch was loaded (it must not be: a bundle runs without it).

Peak memory is VmHWM from /proc/self/status: the high-water mark of this process's own address space.
``ru_maxrss`` is not used on Linux because it carries the parent's peak across fork + exec, so a probe
started from a big process (a test session) would report the parent's memory.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from pathlib import Path

from ..artifact import load_artifact
from ..runtimes import Deployment, load_runtime

BUNDLE_CAPTION = "red apple"  # a bundle's first call: this caption to an image


def peak_rss_mb() -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux; other systems differ


def main(folder: str, deployment: str) -> None:
    """Load ``folder``'s runtime as ``deployment`` (JSON of ``Deployment``), call it once, print the JSON line."""
    artifact = load_artifact(Path(folder))
    if artifact.format == "bundle":  # caption in, image out, and nothing of torch imported (the bundle's claim)
        import numpy as np

        z = np.random.default_rng(0).standard_normal((1, artifact.io["inputs"]["z"]["shape"][1])).astype(np.float32)
        first_call = lambda runtime: runtime({"z": z, **runtime.embed([BUNDLE_CAPTION])})  # noqa: E731
    else:
        from ..passes.parity import parity_inputs  # imports torch: a bundle's probe must run without it

        inputs = parity_inputs(artifact.io, 1, 0)
        first_call = lambda runtime: runtime(inputs)  # noqa: E731
    baseline = peak_rss_mb()
    started = time.perf_counter()
    first_call(load_runtime(artifact, deploy=Deployment(**json.loads(deployment))))
    first_ms = (time.perf_counter() - started) * 1000.0
    peak = peak_rss_mb()
    # the subprocess protocol: one JSON line on stdout, read by bench.speed.probe
    sys.stdout.write(json.dumps({"first_inference_ms": first_ms, "peak_rss_mb": peak, "baseline_rss_mb": baseline,
                                 "torch_imported": "torch" in sys.modules}) + "\n")

if __name__ == "__main__":
    main(*sys.argv[1:3])
