"""The backend's measured peak on this CPU: how many GMAC/s one large convolution reaches, per runtime and precision.

    peaks = measure_peaks(["openvino/int8", "torch/f32"], threads=2)   # {"openvino/int8": {"gmacs_per_s": ...}}

A candidate's effective GMAC/s (its MACs per image / its batch-1 p50) says little alone: a 32 px generator's
small convolutions cannot keep a CPU's vector units busy. Set beside what the same runtime reaches at the
same precision on one large 3x3 convolution (256 -> 256 channels on 32 x 32, batch 1: 604 M MACs, a GEMM
of 1024 x 2304 x 256), it says how much is left on the table. The probe is built once per set of library
versions, in the cache (``cache_root()/peak-probe/<hash>``):

* ``torch/f32``: the convolution in torch eager, ``inference_mode``;
* ``onnxruntime/f32``: its ONNX export; ``onnxruntime/int8``: that model through onnxruntime's
  ``quantize_static`` (QDQ, per-channel, as ``quantize_ort``);
* ``openvino/f32`` and ``openvino/bf16``: the ONNX model converted to IR, compiled at that precision;
  ``openvino/int8``: that IR through ``nncf.quantize`` (as ``quantize_nncf``).

Each is timed in a fresh process of its own (``python -m compresskit.bench.peak``) under the same
deployment as a candidate's latency figure (static batch 1, latency hint, the same threads), after a warm-up,
as the median of ``calls`` calls. Calibration inputs are seeded normal noise: the speed of INT8 kernels does
not depend on the data.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from ..cache import atomic_dir, cache_root, stable_hash
from ..errors import CompresskitError
from ..runtimes import Deployment, onnx_runtime, openvino_runtime
from .speed import percentiles, time_calls, warm_up

CHANNELS, SIZE, KERNEL = 256, 32, 3
PROBE_MACS = CHANNELS * CHANNELS * KERNEL * KERNEL * SIZE * SIZE  # per call (batch 1)
KINDS = ("torch/f32", "onnxruntime/f32", "onnxruntime/int8", "openvino/f32", "openvino/bf16", "openvino/int8")
FILES = {"onnxruntime/f32": "conv.onnx", "onnxruntime/int8": "conv_int8.onnx", "openvino/f32": "conv.xml",
         "openvino/bf16": "conv.xml", "openvino/int8": "conv_int8.xml"}
WEIGHTS = "conv.npy"
HOW = (f"one {KERNEL}x{KERNEL} convolution {CHANNELS} -> {CHANNELS} channels on {SIZE}x{SIZE}, batch 1 "
       f"({PROBE_MACS / 1e6:.0f} M MACs), in the same runtime and precision, deployed as for latency, timed alone "
       f"in a fresh process: median of the timed calls after a warm-up")


def _conv(weight: np.ndarray):
    import torch

    conv = torch.nn.Conv2d(CHANNELS, CHANNELS, KERNEL, padding=KERNEL // 2, bias=True)
    with torch.no_grad():
        conv.weight.copy_(torch.from_numpy(weight))
        conv.bias.zero_()
    return conv.eval()


def _samples(count: int) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.standard_normal((1, CHANNELS, SIZE, SIZE)).astype(np.float32) for _ in range(count)]


def probe_folder() -> Path:
    """The probe in every form, built on first use for these library versions."""
    from importlib.metadata import version

    versions = {name: version(name) for name in ("torch", "onnx", "onnxruntime", "openvino", "nncf")}
    folder = cache_root() / "peak-probe" / stable_hash({"probe": [CHANNELS, SIZE, KERNEL], **versions})
    if not folder.exists():
        with atomic_dir(folder) as tmp:
            build_probe(tmp)
    return folder


def build_probe(folder: Path) -> None:
    """Write the probe in every form into ``folder``."""
    import nncf
    import openvino as ov
    import torch
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, quantize_static

    weight = np.random.default_rng(0).standard_normal((CHANNELS, CHANNELS, KERNEL, KERNEL)).astype(np.float32) * 0.02
    np.save(folder / WEIGHTS, weight)
    example = torch.from_numpy(_samples(1)[0])
    torch.onnx.export(_conv(weight), (example,), str(folder / FILES["onnxruntime/f32"]), input_names=["x"],
                      output_names=["y"], opset_version=17, dynamo=False)

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.rest = iter({"x": x} for x in _samples(8))

        def get_next(self):
            return next(self.rest, None)

    quantize_static(str(folder / FILES["onnxruntime/f32"]), str(folder / FILES["onnxruntime/int8"]), Reader(),
                    quant_format=QuantFormat.QDQ, per_channel=True)
    model = ov.convert_model(str(folder / FILES["onnxruntime/f32"]))
    ov.save_model(model, str(folder / FILES["openvino/f32"]), compress_to_fp16=False)
    quantized = nncf.quantize(model, nncf.Dataset(_samples(8)), subset_size=8)
    ov.save_model(quantized, str(folder / FILES["openvino/int8"]), compress_to_fp16=False)


def _runtime(folder: Path, kind: str, threads: int):
    backend, precision = kind.split("/")
    if backend == "torch":
        import torch

        torch.set_num_threads(threads)
        conv = _conv(np.load(folder / WEIGHTS, allow_pickle=False))

        def call(inputs):
            with torch.inference_mode():
                return conv(torch.from_numpy(inputs["x"])).numpy()

        return call
    if backend == "onnxruntime":
        return onnx_runtime(folder / FILES[kind], threads)
    deploy = Deployment(threads=threads, batch=1, hint="latency", precision="bf16" if precision == "bf16" else "f32")
    return openvino_runtime(folder / FILES[kind], deploy=deploy)


def time_probe(folder: Path, kind: str, threads: int, calls: int = 60, warmup_s: float = 1.0) -> dict:
    """{"ms_p50", "gmacs_per_s", "n"} of the probe in this process (``measure_peaks`` gives it one of its own)."""
    call = _runtime(folder, kind, threads)
    inputs = {"x": _samples(1)[0]}
    warm_up(lambda: call(inputs), 5, warmup_s)
    p = percentiles(time_calls(lambda: call(inputs), calls))
    return {"ms_p50": p["p50"], "gmacs_per_s": PROBE_MACS / (p["p50"] / 1000.0) / 1e9, "n": p["n"]}


def peak_kind(backend: str, precision: str, int8: bool) -> str | None:
    """The probe that a candidate of this backend and precision is compared with (None: none fits)."""
    kind = f"{backend}/{'int8' if int8 else precision}"
    return kind if kind in KINDS else None


def measure_peaks(kinds: list[str], threads: int, calls: int = 60, timeout_s: float = 600) -> dict[str, dict]:
    """{kind: {"ms_p50", "gmacs_per_s", "n"}}, each kind timed in a fresh process of its own."""
    folder = probe_folder()
    found = {}
    for kind in sorted(set(kinds)):
        command = [sys.executable, "-m", "compresskit.bench.peak", str(folder), kind, json.dumps({"threads": threads, "calls": calls})]
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s)
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["no output"])[-1]
            raise CompresskitError(f"timing the {kind} peak probe failed: {last}")
        found[kind] = json.loads(done.stdout.strip().splitlines()[-1])
    return found


def main() -> None:
    folder, kind, options = Path(sys.argv[1]), sys.argv[2], json.loads(sys.argv[3])
    sys.stdout.write(json.dumps(time_probe(folder, kind, **options)) + "\n")


if __name__ == "__main__":
    main()
