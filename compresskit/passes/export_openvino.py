"""``export_openvino``: ONNX -> OpenVINO IR (model.xml + model.bin), parity-tested.

``openvino.convert_model`` on the ONNX file, saved with fp32 weights by default (``compress_to_fp16``
halves the .bin). Parity is measured against onnxruntime on the source ONNX (itself checked against
torch by ``export_onnx``), with OpenVINO forced to f32 inference for the comparison.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from ..artifact import Artifact
from ..errors import PassFailed
from ..runtimes import ONNX_FILE, OPENVINO_XML, onnx_runtime, openvino_runtime
from ..runtimes.openvino_ir import stable_names
from .base import Pass, PassConfig, PassContext, PassMetric, PassResult
from .parity import max_abs_error


class ExportOpenvinoConfig(PassConfig):
    compress_to_fp16: bool = False
    tolerance: float = Field(1e-4, gt=0, le=2.0)
    parity_batches: list[int] = [1, 4]


class ExportOpenvino(Pass):
    name = "export_openvino"
    about = "OpenVINO IR (.xml/.bin) via openvino.convert_model, parity vs the ONNX model"
    Config = ExportOpenvinoConfig
    accepts = ("onnx",)
    produces = "openvino"
    libraries = ("openvino",)
    metrics = {"parity_max_abs_error": PassMetric("", "lower", "max |exported - source| pixel, seeded inputs")}
    version = "2"  # 2: auto-named nodes renamed by position (byte-identical IR on every run)

    def run(self, src: Artifact, out_dir: Path, ctx: PassContext) -> PassResult:
        import openvino as ov

        cfg = self.config
        model = ov.convert_model(str(src.file(ONNX_FILE)))
        stable_names(model)
        ov.save_model(model, str(out_dir / OPENVINO_XML), compress_to_fp16=cfg.compress_to_fp16)
        errors = max_abs_error(onnx_runtime(src.file(ONNX_FILE)), openvino_runtime(out_dir / OPENVINO_XML),
                               src.io, cfg.parity_batches, ctx.seed)
        worst = max(errors.values())
        tolerance = max(cfg.tolerance, 2e-2) if cfg.compress_to_fp16 else cfg.tolerance
        if worst > tolerance:
            raise PassFailed(f"export_openvino: max abs error vs ONNX {worst:.3g} > tolerance {tolerance:g}")
        return PassResult(metrics={"parity_max_abs_error": worst},
                          details={"parity_by_batch": errors, "parity_reference": "onnxruntime fp32",
                                   "compress_to_fp16": cfg.compress_to_fp16})
