"""One call shape for every backend: named float32 numpy inputs -> float32 NCHW images in [-1, 1].

    runtime = load_runtime(artifact, threads=2)                        # torch | onnx (onnxruntime) | openvino
    images = runtime({"z": z, "text": text})        # + "tokens", "token_mask" for token-conditioned generators
    runtime = load_runtime(artifact, deploy=Deployment(threads=2, batch=1, hint="latency"))   # as deployed

The deployed artifact is what runs: an ONNX artifact runs in onnxruntime, an OpenVINO IR in OpenVINO,
never a torch stand-in. A ``Deployment`` says how the runtime is set up for a scenario, each backend with
its own documented best settings for it:

* OpenVINO: the IR reshaped to a static batch (``batch``), ``PERFORMANCE_HINT`` LATENCY or THROUGHPUT,
  ``INFERENCE_NUM_THREADS``, and an explicit ``INFERENCE_PRECISION_HINT`` (f32 by default: on CPUs with
  AMX or AVX512-BF16 OpenVINO would otherwise pick bf16 by itself; bf16 is offered only when asked for).
* onnxruntime: ``intra_op_num_threads``, one inter-op thread, idle spinning off unless asked for
  (a spinning pool kept burning 13-20 ms of CPU after each call here, stolen from whatever runs next on a
  small CPU; whether spinning speeds up onnxruntime's own calls is not measured: ``ort_spinning=True``).
* torch: ``torch.set_num_threads`` and ``inference_mode``.

``runtime.settings`` records what was applied, read back from the runtime where it can say (OpenVINO's
compiled properties), so a report states every setting it measured under.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Literal

import numpy as np

from ..artifact import Artifact
from ..errors import ArtifactError

ONNX_FILE = "model.onnx"
OPENVINO_XML = "model.xml"
PRECISIONS = ("f32", "bf16")


@dataclass(frozen=True)
class Deployment:
    """How a runtime is set up for one scenario (None / "none": the backend's own default)."""

    threads: int | None = None
    batch: int | None = None  # static batch the model is compiled for (OpenVINO); None keeps the exported shapes
    hint: Literal["none", "latency", "throughput"] = "none"  # OpenVINO PERFORMANCE_HINT
    precision: Literal["f32", "bf16", "auto"] = "f32"  # OpenVINO INFERENCE_PRECISION_HINT ("auto": its default)
    ort_spinning: bool = False  # onnxruntime session.intra_op.allow_spinning
    # OpenVINO: inputs bound to the request once and reused (False: the per-call dict API, ``request.infer(dict)``,
    # as before issue 40; kept so ``compresskit time --crosscheck`` can show what the binding saves)
    bind_inputs: bool = True


@dataclass
class Runtime:
    backend: str
    threads: int | None
    call: Callable[[dict[str, np.ndarray]], np.ndarray]
    settings: dict = field(default_factory=dict)
    # run ``count`` calls as fast as the runtime allows (OpenVINO: async requests over its streams); seconds
    run_many: Callable[[dict[str, np.ndarray], int], float] | None = None
    # a bundle's own caption side: captions -> the generator's caption inputs (None: MiniLM in torch is needed)
    embed: Callable[[list[str]], dict[str, np.ndarray]] | None = None

    def __call__(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        return self.call(inputs)

    def images_per_second(self, inputs: dict[str, np.ndarray], count: int) -> float:
        """Images/s over ``count`` calls on ``inputs`` (sequential calls unless the runtime runs them in parallel)."""
        batch = len(next(iter(inputs.values())))
        if self.run_many is not None:
            return count * batch / self.run_many(inputs, count)
        started = time.perf_counter()
        for _ in range(count):
            self.call(inputs)
        return count * batch / (time.perf_counter() - started)


def _library_version(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


def _plain(value) -> str | int:
    """An OpenVINO property as JSON-friendly text (``f32``, ``LATENCY``) or number."""
    if isinstance(value, int):
        return value
    return value.to_string() if hasattr(value, "to_string") else str(getattr(value, "name", value))


def torch_runtime(folder: Path, threads: int | None = None) -> Runtime:
    # torch and the models are imported here: this module is the bundle runtime's base and must stay torch-free
    import torch

    from ..models import io_spec  # torch, as above
    from ..models.inputs import input_names  # torch, as above
    from ..models.io import load_model  # torch, as above

    if threads:
        torch.set_num_threads(threads)
    generator = load_model(folder).eval()
    names = input_names(io_spec(generator))

    def call(inputs: dict[str, np.ndarray]) -> np.ndarray:
        with torch.inference_mode():
            return generator(*(torch.from_numpy(inputs[name]) for name in names)).numpy()

    settings = {"library": "torch", "version": _library_version("torch"), "mode": "eager fp32, inference_mode",
                "num_threads": torch.get_num_threads()}
    return Runtime("torch", threads, call, settings)


def onnx_runtime(path: Path, threads: int | None = None, spinning: bool = False, *, all_outputs: bool = False) -> Runtime:
    """``all_outputs``: the call returns every output (a list), not the first alone."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    settings = {"library": "onnxruntime", "version": ort.__version__, "provider": "CPUExecutionProvider",
                "intra_op_num_threads": threads or "default", "inter_op_num_threads": 1 if threads else "default",
                "allow_spinning": spinning, "graph_optimization_level": options.graph_optimization_level.name}
    if all_outputs:
        return Runtime("onnxruntime", threads, lambda inputs: session.run(None, inputs), settings)
    return Runtime("onnxruntime", threads, lambda inputs: session.run(None, inputs)[0], settings)


COMPUTE_LAYERS = ("Convolution", "GroupConvolution", "Deconvolution", "FullyConnected", "MatMul", "Subgraph",
                  "Eltwise", "Interpolate", "MVN", "Softmax")


def executed_kernels(compiled) -> dict[str, int]:
    """What OpenVINO's compiled graph runs, read back from its runtime model: ``"Convolution u8
    brgconv_avx512_I8": 4`` (layer type, the precision it executes in, the kernel chosen, which names the ISA)
    for the layers that compute; the INT8 share and the ISA actually used are read here, not assumed."""
    found: dict[str, int] = {}
    for op in compiled.get_runtime_model().get_ordered_ops():
        info = op.get_rt_info()
        layer = info["layerType"].astype(str)
        if layer in COMPUTE_LAYERS:
            key = f"{layer} {info['runtimePrecision'].astype(str)} {info['primitiveType'].astype(str)}"
            found[key] = found.get(key, 0) + 1
    return dict(sorted(found.items()))


def executed_precisions(kernels: dict[str, int]) -> dict[str, int]:
    """{"u8": 7, "f32": 15, ...}: how many compute layers execute in each precision (from ``executed_kernels``)."""
    found: dict[str, int] = {}
    for key, count in kernels.items():
        precision = key.split()[1]
        found[precision] = found.get(precision, 0) + count
    return found


class _InputBinder:
    """Points an OpenVINO infer request's inputs at caller arrays, zero-copy, and skips it when the same arrays
    come again: the call then costs ``request.infer()`` and one copy of the output, nothing rebuilt.

    ``request.infer(dict, share_inputs=True)`` builds a Tensor per input and an output dict every call: 0.04 ms of
    a 0.22 ms call for the edge recipe's INT8 student (AVX512-BF16 EPYC, 2 threads), against 0.18 ms from
    ``benchmark_app``. The arrays bound last are held, so an ``id`` seen again is the same live array (shared
    memory: values written into it in place between calls are read, as with ``share_inputs``).
    """

    def __init__(self, request, compiled):
        self.request = request
        self.dtypes = {port.get_any_name(): port.get_element_type().to_dtype() for port in compiled.inputs}
        # name -> (the caller's array last bound, the buffer the tensor points at): both kept alive
        self.bound: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def __call__(self, inputs: dict[str, np.ndarray]) -> None:
        import openvino as ov

        if inputs.keys() != self.dtypes.keys():  # a stale tensor from the last call must never stand in
            missing, unknown = sorted(set(self.dtypes) - set(inputs)), sorted(set(inputs) - set(self.dtypes))
            what = "; ".join(f"{label} {', '.join(map(repr, names))}"
                             for label, names in (("missing", missing), ("unknown", unknown)) if names)
            raise ValueError(f"the model's inputs are {', '.join(sorted(self.dtypes))}; got {', '.join(sorted(inputs))} "
                             f"({what})")
        for name, array in inputs.items():
            if name in self.bound and self.bound[name][0] is array:
                continue
            data = np.ascontiguousarray(array, dtype=self.dtypes[name])
            self.request.set_tensor(name, ov.Tensor(data, shared_memory=True))
            self.bound[name] = (array, data)


def openvino_runtime(path: Path, threads: int | None = None, *, deploy: Deployment | None = None,
                     all_outputs: bool = False) -> Runtime:
    """``all_outputs``: the call returns every output (a list), not the first alone."""
    import openvino as ov

    deploy = deploy or Deployment(threads=threads)
    core = ov.Core()
    model = core.read_model(str(path))
    if deploy.batch:  # static shapes: what a deployment that serves one batch size compiles
        model.reshape({p.get_any_name(): [deploy.batch, *p.get_partial_shape().get_min_shape()[1:]]
                       for p in model.inputs})
    config: dict = {} if deploy.precision == "auto" else {"INFERENCE_PRECISION_HINT": deploy.precision}
    if deploy.hint != "none":
        config["PERFORMANCE_HINT"] = deploy.hint.upper()
    if deploy.threads:
        config["INFERENCE_NUM_THREADS"] = deploy.threads
    compiled = core.compile_model(model, "CPU", config)
    request = compiled.create_infer_request()
    settings = {"library": "openvino", "version": ov.__version__, "device": "CPU",
                "static_shapes": {p.get_any_name(): str(p.get_partial_shape()) for p in model.inputs},
                **{key: _plain(compiled.get_property(key)) for key in
                   ("PERFORMANCE_HINT", "NUM_STREAMS", "INFERENCE_NUM_THREADS", "INFERENCE_PRECISION_HINT",
                    "OPTIMAL_NUMBER_OF_INFER_REQUESTS")}}
    settings["executed_kernels"] = executed_kernels(compiled)
    settings["executed_precisions"] = executed_precisions(settings["executed_kernels"])

    def run_many(inputs: dict[str, np.ndarray], count: int) -> float:
        queue = ov.AsyncInferQueue(compiled, int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")))
        started = time.perf_counter()
        for _ in range(count):
            queue.start_async(inputs, share_inputs=True)
        queue.wait_all()
        return time.perf_counter() - started

    bind = _InputBinder(request, compiled)
    n_outputs = len(compiled.outputs)

    def call(inputs: dict[str, np.ndarray]) -> np.ndarray:
        bind(inputs)
        request.infer()
        return request.get_output_tensor(0).data.copy()  # the request's own buffer: the next call overwrites it

    def call_per_dict(inputs: dict[str, np.ndarray]) -> np.ndarray:  # a Tensor per input, an output dict, per call
        return request.infer(inputs, share_inputs=True)[compiled.output(0)].copy()

    def call_all(inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
        bind(inputs)
        request.infer()
        return [request.get_output_tensor(i).data.copy() for i in range(n_outputs)]

    if all_outputs:
        return Runtime("openvino", deploy.threads, call_all, settings)

    settings["inputs"] = "bound once, reused" if deploy.bind_inputs else "per-call dict (request.infer(dict))"
    return Runtime("openvino", deploy.threads, call if deploy.bind_inputs else call_per_dict, settings,
                   run_many if deploy.hint == "throughput" else None)


def load_runtime(artifact: Artifact, threads: int | None = None, *, deploy: Deployment | None = None) -> Runtime:
    """The artifact's own runtime; ``deploy`` (if given) sets threads, static batch, hint and precision."""
    deploy = deploy or Deployment(threads=threads)
    if artifact.format == "torch":
        return torch_runtime(artifact.path, deploy.threads)
    if artifact.format == "onnx":
        return onnx_runtime(artifact.file(ONNX_FILE), deploy.threads, deploy.ort_spinning)
    if artifact.format == "openvino":
        return openvino_runtime(artifact.file(OPENVINO_XML), deploy=deploy)
    if artifact.format == "bundle":
        from .bundle import bundle_runtime  # a cycle: runtimes.bundle imports this module

        return bundle_runtime(artifact.path, deploy)
    raise ArtifactError(f"{artifact.path}: no runtime for format {artifact.format!r}")
