"""``export_onnx``: torch generator -> ONNX (named inputs z/text, dynamic batch), checked and parity-tested.

Uses PyTorch's TorchScript-based exporter (``dynamo=False``): it needs no extra package and handles the
generators here. Parity against torch eager is measured with onnxruntime on seeded inputs at each of
``parity_batches`` and the pass fails above ``tolerance``.

``fuse_conditioning: true`` (the project's DF-GAN generators) exports ``models.fused.FusedConditioning``: every
fusion MLP's layers merged into two matmuls, the same function in ~20 fewer graph nodes (a batch-1 student on a
CPU pays per node); the parity check then compares the merged graph with the plain torch generator.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from pydantic import Field

from ..artifact import Artifact
from ..errors import PassFailed
from ..models.fused import FusedConditioning, can_fuse
from ..models.inputs import input_names
from ..models.io import load_model
from ..runtimes import ONNX_FILE, onnx_runtime, torch_runtime
from .base import Pass, PassConfig, PassContext, PassMetric, PassResult
from .parity import max_abs_error, parity_inputs


class ExportOnnxConfig(PassConfig):
    opset: int = Field(17, ge=17, le=21)
    tolerance: float = Field(1e-4, gt=0, le=2.0)  # max abs error vs torch on images in [-1, 1]
    parity_batches: list[int] = [1, 4]
    fuse_conditioning: bool = False  # merge a DF-GAN's fusion MLPs into two matmuls (models.fused)


class ExportOnnx(Pass):
    name = "export_onnx"
    about = "ONNX export (opset >= 17, named inputs, dynamic batch), onnx.checker, parity vs torch"
    Config = ExportOnnxConfig
    accepts = ("torch",)
    produces = "onnx"
    libraries = ("torch", "onnx", "onnxruntime")
    metrics = {"parity_max_abs_error": PassMetric("", "lower", "max |exported - source| pixel, seeded inputs")}

    def run(self, src: Artifact, out_dir: Path, ctx: PassContext) -> PassResult:
        import onnx  # heavy optional backend: imported when the pass runs

        cfg = self.config
        generator = load_model(src.path).eval()
        if cfg.fuse_conditioning:
            reason = can_fuse(generator)
            if reason:
                raise PassFailed(f"export_onnx: {reason}; remove fuse_conditioning")
            generator = FusedConditioning(generator).eval()
        example = parity_inputs(src.io, 2, ctx.seed)
        names = input_names(src.io)
        path = out_dir / ONNX_FILE
        with warnings.catch_warnings():  # the TorchScript exporter announces its successor; ours is pinned
            warnings.simplefilter("ignore")
            torch.onnx.export(
                generator, tuple(torch.from_numpy(example[name]) for name in names), str(path),
                input_names=names, output_names=["image"], opset_version=cfg.opset, dynamo=False,
                dynamic_axes={**{name: {0: "batch"} for name in names}, "image": {0: "batch"}},
            )
        onnx.checker.check_model(str(path), full_check=True)
        errors = max_abs_error(torch_runtime(src.path), onnx_runtime(path), src.io, cfg.parity_batches, ctx.seed)
        worst = max(errors.values())
        if worst > cfg.tolerance:
            raise PassFailed(f"export_onnx: max abs error vs torch {worst:.3g} > tolerance {cfg.tolerance:g}; "
                             "check for unsupported ops or raise tolerance")
        return PassResult(metrics={"parity_max_abs_error": worst},
                          details={"parity_by_batch": errors, "parity_reference": "torch eager fp32",
                                   "opset": cfg.opset, "fused_conditioning": cfg.fuse_conditioning})
