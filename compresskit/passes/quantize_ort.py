"""``quantize_ort``: onnxruntime static INT8 quantisation (QDQ format) of an ONNX model.

``onnxruntime.quantization.quantize_static`` with a calibration reader of ``subset_size`` seeded (noise,
train caption) pairs; calibration method minmax / entropy / percentile; per-channel weights optional.
The model is shape-inferred first (``quant_pre_process``), as onnxruntime recommends. Reported: parity
to the fp32 ONNX model and the share of Conv/MatMul/Gemm nodes that got quantised inputs.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Literal

from pydantic import Field

from ..artifact import Artifact
from ..runtimes import ONNX_FILE, onnx_runtime
from .base import Pass, PassConfig, PassContext, PassMetric, PassResult
from .parity import max_abs_error


class QuantizeOrtConfig(PassConfig):
    subset_size: int = Field(128, ge=1, le=10_000)
    calibration: Literal["minmax", "entropy", "percentile"] = "minmax"
    per_channel: bool = True
    op_types: list[str] = ["Conv", "MatMul", "Gemm"]


def quantized_share(path: Path, op_types: list[str]) -> dict:
    """Nodes of ``op_types`` whose first input comes from a DequantizeLinear (i.e. runs on INT8 data)."""
    import onnx

    graph = onnx.load(str(path)).graph
    producer = {out: node.op_type for node in graph.node for out in node.output}
    compute = [n for n in graph.node if n.op_type in op_types]
    int8 = [n for n in compute if producer.get(n.input[0]) == "DequantizeLinear"]
    return {"int8_ops": len(int8), "fp32_ops": len(compute) - len(int8),
            "int8_ops_fraction": len(int8) / len(compute) if compute else 0.0}


class QuantizeOrt(Pass):
    name = "quantize_ort"
    about = "onnxruntime static QDQ INT8 (minmax / entropy / percentile, per-channel option)"
    Config = QuantizeOrtConfig
    accepts = ("onnx",)
    produces = "onnx"
    libraries = ("onnx", "onnxruntime")
    needs = ("calibration",)
    metrics = {"parity_max_abs_error_vs_fp32": PassMetric("", "lower", "max |int8 - fp32| pixel, 4 seeded images")}

    def run(self, src: Artifact, out_dir: Path, ctx: PassContext) -> PassResult:
        from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, quantize_static
        from onnxruntime.quantization.shape_inference import quant_pre_process

        cfg = self.config
        items = ctx.calibration(cfg.subset_size)

        class Reader(CalibrationDataReader):
            def __init__(self):
                self.rest = iter(items)

            def get_next(self):
                return next(self.rest, None)

        method = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
                  "percentile": CalibrationMethod.Percentile}[cfg.calibration]
        scratch = Path(tempfile.mkdtemp(prefix="ck-ort-"))
        try:
            prepared = scratch / "prepared.onnx"
            quant_pre_process(str(src.file(ONNX_FILE)), str(prepared), skip_symbolic_shape=True)
            quantize_static(str(prepared), str(out_dir / ONNX_FILE), Reader(), quant_format=QuantFormat.QDQ,
                            per_channel=cfg.per_channel, calibrate_method=method, op_types_to_quantize=cfg.op_types,
                            extra_options={"CalibTensorRangeSymmetric": False})
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        errors = max_abs_error(onnx_runtime(src.file(ONNX_FILE)), onnx_runtime(out_dir / ONNX_FILE), src.io, [4], ctx.seed)
        return PassResult(metrics={"parity_max_abs_error_vs_fp32": errors[4]},
                          details={**quantized_share(out_dir / ONNX_FILE, cfg.op_types), "calibration_pairs": cfg.subset_size,
                                   "calibration": cfg.calibration, "per_channel": cfg.per_channel})
