"""``bundle``: tokenizer + text encoder + generator in one folder that turns a caption into an image without torch.

The input is a deployed generator (OpenVINO IR or ONNX); the text encoder (MiniLM, ``text.export``) joins
it in the same runtime:

* ``text_encoder: fp32``: MiniLM merely exported (ONNX; OpenVINO IR converted from it);
* ``text_encoder: int8`` (OpenVINO): NNCF INT8 with accuracy control — ``nncf.quantize_with_accuracy_control``
  reverts the layers whose INT8 error hurts most until the mean cosine between the INT8 and the fp32 pooled
  sentence vectors, over ``validation_size`` validation-split captions, dropped by at most ``max_drop``.
  Calibration: ``subset_size`` train captions, tokenised as the bundle does. (The generator's images from
  these vectors are what the bench then scores: R-precision, KID, diversity, attributes.)

The folder (``runtimes.bundle``): ``bundle.json``, ``tokenizer.json`` (the MiniLM package's own),
``text_encoder.{xml,bin}|.onnx``, ``generator.{xml,bin}|.onnx``. Reported: the text encoder's cosine to
fp32 MiniLM on validation captions (pooled vectors; 1.0 for fp32 itself) and the bundle's size.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field

from ..artifact import Artifact
from ..errors import PassFailed
from ..runtimes import ONNX_FILE, OPENVINO_XML
from ..runtimes.bundle import BUNDLE_FILE, BUNDLE_FORMAT, load_tokenizer
from .base import Pass, PassConfig, PassContext, PassMetric, PassResult


class BundleConfig(PassConfig):
    text_encoder: Literal["fp32", "int8"] = "fp32"
    subset_size: int = Field(300, ge=1, le=10_000)  # int8: calibration captions (train split)
    validation_size: int = Field(200, ge=4, le=10_000)  # captions of the val split the cosine is taken over
    max_drop: float = Field(0.002, gt=0, le=1)  # int8: allowed drop of the mean cosine to fp32 MiniLM


def _tokenized(tokenizer, captions: list[str]) -> list[dict[str, np.ndarray]]:
    """One {input_ids, attention_mask} dict per caption (batch 1, its own length), as the bundle tokenises."""
    found = []
    for encoded in (tokenizer.encode(caption) for caption in captions):  # one at a time: no padding
        found.append({"input_ids": np.array([encoded.ids], dtype=np.int64),
                      "attention_mask": np.array([encoded.attention_mask], dtype=np.int64)})
    return found


def _mean_cosine(compiled, items: list[dict], reference: list[np.ndarray]) -> tuple[float, list[float]]:
    """Mean cosine of the pooled vectors (unit norm: the dot product) to the fp32 ones."""
    per_item = [float(np.sum(compiled(item)[0] * ref)) for item, ref in zip(items, reference)]
    return float(np.mean(per_item)), per_item


class Bundle(Pass):
    name = "bundle"
    about = "tokenizer + MiniLM text encoder (fp32, or INT8 with accuracy control) + generator: runs without torch"
    Config = BundleConfig
    accepts = ("openvino", "onnx")
    produces = "bundle"
    version = "2"  # 2: calibration and validation captions tokenised to their own length (1: padded to 128)
    libraries = ("openvino", "nncf", "onnxruntime", "tokenizers")
    needs = ("captions",)
    metrics = {"text_cosine_vs_fp32": PassMetric("", "higher", "mean cosine of the bundle's sentence vectors to "
                                                               "fp32 MiniLM's, validation captions"),
               "bundle_size_mb": PassMetric("MiB", "lower", "every file of the bundle")}

    def run(self, src: Artifact, out_dir: Path, ctx: PassContext) -> PassResult:
        import openvino as ov

        from ..models.inputs import input_names
        from ..text.encoder import MAX_TOKENS
        from ..text.export import TOKENIZER_FILE, text_encoder_onnx, tokenizer_file

        cfg = self.config
        backend = "openvino" if src.format == "openvino" else "onnxruntime"
        if cfg.text_encoder == "int8" and backend != "openvino":
            raise PassFailed("bundle: text_encoder: int8 is built with NNCF for OpenVINO; bundle an OpenVINO "
                             "generator (after export_openvino) or use text_encoder: fp32")
        shutil.copyfile(tokenizer_file(), out_dir / TOKENIZER_FILE)
        tokenizer = load_tokenizer(out_dir / TOKENIZER_FILE, MAX_TOKENS)
        val_items = _tokenized(tokenizer, ctx.captions(cfg.validation_size, seed=ctx.seed + 7, split="val"))
        onnx_path = text_encoder_onnx()
        core = ov.Core()
        fp32 = core.compile_model(core.read_model(str(onnx_path)), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
        reference = [fp32(item)[0][0] for item in val_items]
        if backend == "onnxruntime":
            text_file = "text_encoder.onnx"
            shutil.copyfile(onnx_path, out_dir / text_file)
            generator_file = "generator.onnx"
            shutil.copyfile(src.file(ONNX_FILE), out_dir / generator_file)
            cosine = 1.0
        else:
            text_file, generator_file = "text_encoder.xml", "generator.xml"
            model = ov.convert_model(str(onnx_path))
            if cfg.text_encoder == "int8":
                import nncf

                calib = _tokenized(tokenizer, ctx.captions(cfg.subset_size, seed=ctx.seed))
                model = nncf.quantize_with_accuracy_control(
                    model, nncf.Dataset(calib), nncf.Dataset(val_items),
                    validation_fn=lambda compiled, data: _mean_cosine(compiled, list(data), reference),
                    max_drop=cfg.max_drop, drop_type=nncf.DropType.ABSOLUTE, subset_size=cfg.subset_size,
                    model_type=nncf.ModelType.TRANSFORMER, preset=nncf.QuantizationPreset.MIXED)
            ov.save_model(model, str(out_dir / text_file), compress_to_fp16=False)
            compiled = core.compile_model(str(out_dir / text_file), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
            cosine = _mean_cosine(compiled, val_items, reference)[0]
            for suffix in (".xml", ".bin"):
                shutil.copyfile(src.file(OPENVINO_XML).with_suffix(suffix), out_dir / f"generator{suffix}")
        spec = {"format": BUNDLE_FORMAT, "tokenizer": TOKENIZER_FILE, "max_tokens": MAX_TOKENS,
                "pad_id": tokenizer.token_to_id("[PAD]"), "pad_token": "[PAD]",
                "text_encoder": {"file": text_file, "backend": backend, "precision": cfg.text_encoder,
                                 "outputs": ["pooled", "hidden"]},
                "generator": {"file": generator_file, "backend": backend, "io": src.io,
                              "input_order": input_names(src.io)}}
        (out_dir / BUNDLE_FILE).write_text(json.dumps(spec, indent=1) + "\n")
        size = sum(p.stat().st_size for p in out_dir.iterdir() if p.is_file()) / 2**20
        return PassResult(metrics={"text_cosine_vs_fp32": cosine, "bundle_size_mb": size},
                          details={"text_encoder": cfg.text_encoder, "backend": backend,
                                   "validation_captions": len(val_items)})
