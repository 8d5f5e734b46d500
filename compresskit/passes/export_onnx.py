"""``export_onnx``: torch generator -> ONNX (named inputs z/text, dynamic batch), checked and parity-tested.

Uses PyTorch's TorchScript-based exporter (``dynamo=False``): it needs no extra package and handles the
generators here; parity against torch eager is measured with onnxruntime on seeded inputs at two batch
sizes and the pass fails above ``tolerance``.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import torch
from pydantic import Field

from ..artifact import Artifact
from ..errors import PassFailed
from ..models import io_spec
from ..models.io import load_generator
from .base import Pass, PassConfig, PassContext

ONNX_FILE = "model.onnx"


class ExportOnnxConfig(PassConfig):
    opset: int = Field(17, ge=17, le=21)
    tolerance: float = Field(1e-4, gt=0)  # max abs error vs torch on images in [-1, 1]
    parity_batches: list[int] = [1, 4]


def parity_inputs(generator: torch.nn.Module, batch: int, seed: int) -> dict[str, np.ndarray]:
    """Seeded parity inputs: standard normal z and unit-norm caption-like vectors."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(batch, generator.config.z_dim, generator=g)
    text = torch.nn.functional.normalize(torch.randn(batch, generator.config.text_dim, generator=g), dim=1)
    return {"z": z.numpy(), "text": text.numpy()}


def torch_outputs(generator: torch.nn.Module, inputs: dict[str, np.ndarray]) -> np.ndarray:
    with torch.inference_mode():
        return generator(*(torch.from_numpy(inputs[k]) for k in ("z", "text"))).numpy()


class ExportOnnx(Pass):
    name = "export_onnx"
    about = "ONNX export (opset >= 17, named inputs, dynamic batch), onnx.checker, parity vs torch"
    Config = ExportOnnxConfig
    accepts = ("torch",)
    produces = "onnx"
    libraries = ("torch", "onnx", "onnxruntime")

    def run(self, src: Artifact, out_dir: Path, ctx: PassContext) -> dict:
        import onnx
        import onnxruntime as ort

        cfg = self.config
        generator = load_generator(src.path).eval()
        spec = io_spec(generator)
        example = parity_inputs(generator, 2, ctx.seed)
        path = out_dir / ONNX_FILE
        with warnings.catch_warnings():  # the TorchScript exporter announces its successor; ours is pinned
            warnings.simplefilter("ignore")
            torch.onnx.export(
                generator, tuple(torch.from_numpy(example[k]) for k in ("z", "text")), str(path),
                input_names=["z", "text"], output_names=["image"], opset_version=cfg.opset, dynamo=False,
                dynamic_axes={"z": {0: "batch"}, "text": {0: "batch"}, "image": {0: "batch"}},
            )
        onnx.checker.check_model(str(path), full_check=True)
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        errors = {}
        for batch in cfg.parity_batches:
            inputs = parity_inputs(generator, batch, ctx.seed + batch)
            errors[batch] = float(np.abs(session.run(None, inputs)[0] - torch_outputs(generator, inputs)).max())
        worst = max(errors.values())
        if worst > cfg.tolerance:
            raise PassFailed(f"export_onnx: max abs error vs torch {worst:.3g} > tolerance {cfg.tolerance:g}; "
                             "check for unsupported ops or raise tolerance")
        (out_dir / "io.json").write_text(json.dumps(spec, indent=1) + "\n")
        return {"parity_max_abs_error": worst, "parity_by_batch": errors, "opset": cfg.opset,
                "generator_config": generator.config.model_dump(), "generator_meta": generator.meta}
