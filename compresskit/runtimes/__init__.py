"""One call shape for every backend: named float32 numpy inputs -> float32 NCHW images in [-1, 1].

    runtime = load_runtime(artifact, threads=2)          # torch | onnx (onnxruntime) | openvino
    images = runtime({"z": z, "text": text})

The deployed artifact is what runs: an ONNX artifact runs in onnxruntime, an OpenVINO IR in OpenVINO,
never a torch stand-in. ``threads`` fixes the intra-op threads (None: the backend's default).
OpenVINO runs with ``INFERENCE_PRECISION_HINT=f32`` unless ``precision="auto"``: on CPUs with AMX or
AVX512-BF16 its default is bf16, which is faster but not what a parity check should compare.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..artifact import Artifact
from ..errors import ArtifactError

ONNX_FILE = "model.onnx"
OPENVINO_XML = "model.xml"


@dataclass
class Runtime:
    backend: str
    threads: int | None
    call: Callable[[dict[str, np.ndarray]], np.ndarray]

    def __call__(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        return self.call(inputs)


def torch_runtime(folder: Path, threads: int | None = None) -> Runtime:
    import torch

    from ..models.io import load_torch_generator

    if threads:
        torch.set_num_threads(threads)
    generator = load_torch_generator(folder).eval()

    def call(inputs: dict[str, np.ndarray]) -> np.ndarray:
        with torch.inference_mode():
            return generator(torch.from_numpy(inputs["z"]), torch.from_numpy(inputs["text"])).numpy()

    return Runtime("torch", threads, call)


def onnx_runtime(path: Path, threads: int | None = None) -> Runtime:
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return Runtime("onnxruntime", threads, lambda inputs: session.run(None, inputs)[0])


def openvino_runtime(path: Path, threads: int | None = None, precision: str = "f32") -> Runtime:
    import openvino as ov

    config = {} if precision == "auto" else {"INFERENCE_PRECISION_HINT": precision}
    if threads:
        config["INFERENCE_NUM_THREADS"] = threads
    compiled = ov.Core().compile_model(str(path), "CPU", config)
    request = compiled.create_infer_request()
    output = compiled.output(0)
    return Runtime("openvino", threads, lambda inputs: request.infer(inputs)[output].copy())


def load_runtime(artifact: Artifact, threads: int | None = None, **options) -> Runtime:
    if artifact.format == "torch":
        return torch_runtime(artifact.path, threads)
    if artifact.format == "onnx":
        return onnx_runtime(artifact.file(ONNX_FILE), threads)
    if artifact.format == "openvino":
        return openvino_runtime(artifact.file(OPENVINO_XML), threads, **options)
    raise ArtifactError(f"{artifact.path}: no runtime for format {artifact.format!r}")
