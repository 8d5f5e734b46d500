"""``quantize_nncf``: INT8 post-training quantisation of an OpenVINO model with NNCF.

Calibration: ``subset_size`` seeded (noise, train caption) pairs. ``mode: ptq`` runs ``nncf.quantize``;
``mode: accuracy_control`` runs ``nncf.quantize_with_accuracy_control``, which reverts the most harmful
layers to fp32 until the validation figure dropped by at most ``max_drop`` from the fp32 model's. The figure
(``metric``), over ``validation_size`` other pairs drawn from *validation*-split captions (choices are
made on val, never on eval):

* ``similarity_to_fp32``: 1 - mean |int8 - fp32| / 2 (1.0 for the fp32 model itself);
* ``psnr_vs_teacher``: the release gate's own figure, PSNR (dB, images mapped to [0, 1], torchmetrics, capped
  at 100) against the torch teacher's image for the same noise and caption, averaged over the pairs;
* ``caption_similarity`` (emoji): the text-alignment figure behind the R-precision gate, per image — the cosine
  between the image's vector from the shipped aligner (``emoji32-align``) and its caption's MiniLM vector: a
  quantised layer that loses what the caption asked for moves it, where PSNR against the teacher (whose images
  vary with every noise) and similarity to fp32 are blind to which pixels carry meaning;
* ``attr_accuracy_unseen`` (shapes): the unseen-pairing gate's own figure, whole-object attribute accuracy of
  the images drawn for val captions that hold a (colour, shape) pairing never seen in train — a figure that
  sees a swapped colour or shape, which mean pixel similarity barely does.
The artifact's meta reports the fraction of MACs that run in INT8 and the parity to the fp32 model on 16
val-caption inputs (what a caption feeds it: random token states, which no caption makes, can move a
token-conditioned student several times further); the step fails (no artifact) when the mean absolute
difference exceeds ``max_mean_abs_error``.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field

from ..artifact import Artifact
from ..errors import PassFailed
from ..metrics.alignment import embed_images, load_aligner
from ..metrics.attributes import attribute_accuracy
from ..metrics.fidelity import PSNR_CAP_DB
from ..models.inputs import call_torch, stack_rows
from ..runtimes import OPENVINO_XML, openvino_runtime
from ..runtimes.openvino_ir import stable_names
from .base import Pass, PassConfig, PassContext, PassMetric, PassResult
from .parity import int8_parity


class IgnoredScopeConfig(PassConfig):
    names: list[str] = []
    patterns: list[str] = []
    types: list[str] = []


class QuantizeNncfConfig(PassConfig):
    mode: Literal["ptq", "accuracy_control"] = "ptq"
    subset_size: int = Field(300, ge=1, le=10_000)  # calibration pairs
    preset: Literal["performance", "mixed"] = "performance"
    fast_bias_correction: bool = True
    ignored_scope: IgnoredScopeConfig = IgnoredScopeConfig()
    metric: Literal["similarity_to_fp32", "psnr_vs_teacher", "caption_similarity", "attr_accuracy_unseen"] = (
        "similarity_to_fp32")
    max_drop: float = Field(0.005, gt=0, le=100)  # accuracy_control: allowed drop, in the metric's unit (dB for PSNR)
    validation_size: int = Field(64, ge=4, le=10_000)
    # the step fails when mean |int8 - fp32| over 16 val-caption images (pixels in [-1, 1]) exceeds this
    max_mean_abs_error: float = Field(0.1, gt=0, le=2.0)  # measured: 0.028 (edge student), 0.043 (emoji teacher)


def _similarity(compiled, items: list[dict], reference: list[np.ndarray]) -> tuple[float, list[float]]:
    per_item = [1.0 - float(np.abs(compiled(item)[0] - ref).mean()) / 2.0 for item, ref in zip(items, reference)]
    return float(np.mean(per_item)), per_item


def _psnr(compiled, items: list[dict], reference: list[np.ndarray]) -> tuple[float, list[float]]:
    import torch
    from torchmetrics.functional.image import peak_signal_noise_ratio


    unit = lambda images: torch.from_numpy((np.asarray(images, dtype=np.float64) + 1.0) / 2.0)  # noqa: E731
    per_item = [min(float(peak_signal_noise_ratio(unit(compiled(item)[0]), unit(ref), data_range=1.0)), PSNR_CAP_DB)
                for item, ref in zip(items, reference)]
    return float(np.mean(per_item)), per_item


@functools.cache
def _aligner():

    return load_aligner()  # once: accuracy control validates many times


def _caption_similarity(compiled, items: list[dict], reference=None) -> tuple[float, list[float]]:
    """Cosine of each item's image (through the shipped aligner) with its caption's MiniLM vector (``text``)."""
    import torch


    images = np.stack([np.round((np.clip(compiled(item)[0][0], -1, 1) + 1) * 127.5).astype(np.uint8).transpose(1, 2, 0)
                       for item in items])
    vectors = embed_images(_aligner(), images)
    captions = torch.nn.functional.normalize(torch.from_numpy(np.concatenate([item["text"] for item in items])).float(), dim=1)
    per_item = (vectors * captions).sum(1).tolist()
    return float(np.mean(per_item)), per_item


def _object_accuracy(compiled, items: list[dict], labels: np.ndarray) -> tuple[float, list[float]]:
    """Whole-object accuracy (all four attributes) of each item's image against its caption's labels."""

    images = [np.round((np.clip(compiled(item)[0][0], -1, 1) + 1) * 127.5).astype(np.uint8).transpose(1, 2, 0)
              for item in items]
    per_item = [attribute_accuracy(image[None], label[None])["object"] for image, label in zip(images, labels)]
    return float(np.mean(per_item)), per_item


def _teacher_images(ctx: PassContext, n: int, seed: int) -> list[np.ndarray]:
    """The torch teacher's images for the (noise, val caption) pairs of ``ctx.calibration(n, seed, "val")`` (the
    source carries the teacher's io spec and dataset)."""
    import torch


    teacher = ctx.teacher_model()
    with torch.no_grad():
        return [call_torch(teacher, item).numpy()[0] for item in ctx.calibration(n, seed, "val")]


COMPUTE_OPS = ("Convolution", "GroupConvolution", "ConvolutionBackpropData", "MatMul")
PASS_THROUGH = ("Pad", "Reshape", "Squeeze", "Unsqueeze", "Transpose", "Convert")  # FakeQuantize may sit before these


def _length(dim) -> int:
    return dim.get_length() if dim.is_static else 1  # the dynamic batch counts as 1 image


def _macs(node) -> int:
    """Multiply-accumulates of one compute node per image (dynamic dimensions counted as 1)."""
    out_shape = [_length(d) for d in node.get_output_partial_shape(0)][1:]
    w_shape = [_length(d) for d in node.input(1).get_partial_shape()]
    kind = node.get_type_name()
    if kind == "ConvolutionBackpropData":  # every input pixel scatters C_out x kh x kw products
        in_shape = [_length(d) for d in node.input(0).get_partial_shape()][1:]
        return int(np.prod(in_shape)) * int(np.prod(w_shape[1:]))
    if kind == "GroupConvolution":  # weights (groups, C_out/g, C_in/g, kh, kw)
        return int(np.prod(out_shape)) * int(np.prod(w_shape[2:]))
    if kind == "Convolution":
        return int(np.prod(out_shape)) * int(np.prod(w_shape[1:]))
    transpose_a = node.get_attributes().get("transpose_a", False)
    a_shape = [_length(d) for d in node.input(0).get_partial_shape()]
    inner = a_shape[-2] if transpose_a else a_shape[-1]
    return int(np.prod(out_shape)) * inner  # MatMul


def _quantized_input(node) -> bool:
    source = node.input_value(0).get_node()
    while source.get_type_name() in PASS_THROUGH:
        source = source.input_value(0).get_node()
    return source.get_type_name() == "FakeQuantize"


def int8_fraction(model) -> dict:
    """Share of convolution / transposed-convolution / MatMul MACs (per image) whose activations pass a
    FakeQuantize (through padding or reshapes): the share that runs in INT8."""
    total = quantized = 0
    ops = {"int8": 0, "fp32": 0}
    for node in model.get_ordered_ops():
        if node.get_type_name() not in COMPUTE_OPS:
            continue
        macs, is_int8 = _macs(node), _quantized_input(node)
        total += macs
        quantized += macs if is_int8 else 0
        ops["int8" if is_int8 else "fp32"] += 1
    return {"int8_mac_share": quantized / total if total else 0.0, "int8_ops": ops["int8"], "fp32_ops": ops["fp32"]}


class QuantizeNncf(Pass):
    name = "quantize_nncf"
    about = "INT8 PTQ of an OpenVINO model with nncf.quantize (or accuracy-controlled), INT8 share reported"
    Config = QuantizeNncfConfig
    accepts = ("openvino",)
    produces = "openvino"
    libraries = ("openvino", "nncf")
    needs = ("calibration", "teacher")
    metrics = {"int8_mac_share": PassMetric("", "higher", "share of Convolution/MatMul MACs whose input is INT8"),
               "parity_mean_abs_error_vs_fp32": PassMetric("", "lower", "mean |int8 - fp32| pixel, 16 val-caption images")}
    # 2: auto-named nodes renamed by position (byte-identical IR on every run); 3: accuracy control on val;
    # 4: the parity check on val captions, not random inputs
    version = "4"

    def run(self, src: Artifact, out_dir: Path, ctx: PassContext) -> PassResult:
        import nncf
        import openvino as ov

        cfg = self.config
        core = ov.Core()
        model = core.read_model(str(src.file(OPENVINO_XML)))
        calib = nncf.Dataset(ctx.calibration(cfg.subset_size))
        common = dict(preset=nncf.QuantizationPreset(cfg.preset), subset_size=cfg.subset_size,
                      fast_bias_correction=cfg.fast_bias_correction,
                      ignored_scope=nncf.IgnoredScope(**cfg.ignored_scope.model_dump(), validate=True))
        figures = {}
        if cfg.mode == "ptq":
            quantized = nncf.quantize(model, calib, **common)
        else:
            items = ctx.calibration(cfg.validation_size, seed=ctx.seed + 1, split="val")  # choose on val
            fp32 = core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
            if cfg.metric == "attr_accuracy_unseen":
                figure = _object_accuracy
                items, reference = ctx.unseen_attribute_inputs(cfg.validation_size, ctx.seed + 1, "val")
            elif cfg.metric == "psnr_vs_teacher":
                figure, reference = _psnr, _teacher_images(ctx, cfg.validation_size, ctx.seed + 1)
            elif cfg.metric == "caption_similarity":
                figure, reference = _caption_similarity, None
            else:
                figure, reference = _similarity, [fp32(item)[0] for item in items]
            quantized = nncf.quantize_with_accuracy_control(
                model, calib, nncf.Dataset(items),
                validation_fn=lambda compiled, data: figure(compiled, list(data), reference),
                max_drop=cfg.max_drop, drop_type=nncf.DropType.ABSOLUTE, **common)
            compiled = core.compile_model(quantized, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
            figures[f"val_{cfg.metric}_fp32"] = figure(fp32, items, reference)[0]
            figures[f"val_{cfg.metric}_int8"] = figure(compiled, items, reference)[0]
        stable_names(quantized)
        ov.save_model(quantized, str(out_dir / OPENVINO_XML), compress_to_fp16=False)
        checked = stack_rows(ctx.calibration(16, seed=ctx.seed + 2, split="val"))
        parity = int8_parity(openvino_runtime(src.file(OPENVINO_XML)), openvino_runtime(out_dir / OPENVINO_XML),
                             src.io, ctx.seed, inputs=checked)
        if parity["parity_mean_abs_error_vs_fp32"] > cfg.max_mean_abs_error:
            raise PassFailed(f"quantize_nncf: INT8 output differs from fp32 by {parity['parity_mean_abs_error_vs_fp32']:.4f} "
                             f"mean abs (max_mean_abs_error {cfg.max_mean_abs_error:g}); try mode: accuracy_control, "
                             f"preset: mixed, more calibration pairs, or an ignored_scope for the sensitive layers")
        share = int8_fraction(quantized)
        return PassResult(
            metrics={"int8_mac_share": share.pop("int8_mac_share"),
                     "parity_mean_abs_error_vs_fp32": parity.pop("parity_mean_abs_error_vs_fp32")},
            details={**share, **figures, **parity, "parity_tolerance": cfg.max_mean_abs_error,
                     "calibration_pairs": cfg.subset_size, "mode": cfg.mode, "preset": cfg.preset})
