"""``bundle``: tokenizer + text encoder + generator in one folder that turns a caption into an image without torch.

The input is a deployed generator (OpenVINO IR or ONNX); the text encoder (MiniLM, ``text.export``) joins
it in the same runtime:

* ``text_encoder: fp32``: MiniLM merely exported (ONNX; OpenVINO IR converted from it);
* ``text_encoder: auto``: INT8 where the CPU has INT8 dot-product instructions (VNNI or AMX, ``hardware.fast_int8``),
  else fp32 — without them OpenVINO's INT8 kernels emulate the dot product and the 2-layer MiniLM ran slower INT8
  than fp32 (0.99 vs 0.75 ms, AMD EPYC capped to AVX2; 0.33 vs 0.67 ms with VNNI). Build the bundle on the CPU
  kind it will run on; the step's log and details say what was chosen and why (fp32 always with onnxruntime);
* ``text_encoder: int8`` (OpenVINO): NNCF INT8 with accuracy control — ``nncf.quantize_with_accuracy_control``
  reverts the layers whose INT8 error hurts most until the mean cosine between the INT8 and the fp32 pooled
  sentence vectors, over ``validation_size`` validation-split captions, dropped by at most ``max_drop``.
  Calibration: ``subset_size`` train captions, tokenised as the bundle does. (The generator's images from
  these vectors are what the bench then scores: R-precision, KID, diversity, attributes.)
* ``generator: auto``: the input generator where the CPU has INT8 dot products, else — for an INT8 IR made by
  ``quantize_nncf`` from an fp32 IR that this run folder holds — that fp32 IR: without VNNI the edge recipe's
  INT8 student ran 0.48-0.57 ms against 0.31-0.45 ms fp32 (benchmark_app, AMD EPYC capped to AVX2), and fp32
  loses nothing of the student's quality. ``generator: input`` (default) bundles the input as it is;
* ``text_layers: K`` (1-5): a shallower MiniLM in its place, its first K layers distilled to the full model's
  sentence vector on the dataset's train captions (``text.shallow``; ``text_steps``, ``text_lr``), exported
  in the same graph form; then fp32 or INT8 as above. The reported cosine is always to the full six-layer
  fp32 MiniLM, so it carries what the cut and the INT8 each cost. For a generator that also reads MiniLM's
  token states (``tokens``), the last token states are distilled as well.

OpenVINO bundles take the word-embedding lookup out of the text encoder graph: the 30,522 x 384 table (INT8
with its per-row scale, or fp32) goes to ``.npy`` files that the runtime memory-maps and indexes with numpy,
and the graph reads ``inputs_embeds`` in its place. A compiled graph holds the whole table in float32 (~60 MiB
of a fresh process's peak here); a caption needs a handful of rows. Captions are padded to a multiple of
``PAD_TO_MULTIPLE_OF`` tokens (see ``runtimes.bundle``), in calibration and validation as in deployment.

The folder (``runtimes.bundle``): ``bundle.json``, ``tokenizer.json`` (the MiniLM package's own),
``text_encoder.{xml,bin}|.onnx``, ``word_embeddings*.npy`` (OpenVINO), ``generator.{xml,bin}|.onnx``, and
``generate.py``: the bundle's own runner (``runtimes.standalone_generate``), so a device needs only numpy,
tokenizers and openvino or onnxruntime (``python BUNDLE/generate.py "red apple" --out apple.png``).
Reported: the text encoder's cosine to fp32 MiniLM on validation captions (pooled vectors; 1.0 for fp32
itself) and the bundle's size.
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
from ..hardware import fast_int8, resolved_bf16
from ..runtimes import ONNX_FILE, OPENVINO_XML, standalone_generate
from ..runtimes.bundle import BUNDLE_FILE, BUNDLE_FORMAT, load_tokenizer
from ..runtimes.openvino_ir import stable_names
from .base import Pass, PassConfig, PassContext, PassMetric, PassResult

PAD_TO_MULTIPLE_OF = 8
WORD_EMBEDDINGS_INPUT = "inputs_embeds"


class BundleConfig(PassConfig):
    text_encoder: Literal["fp32", "int8", "auto"] = "fp32"
    generator: Literal["input", "auto"] = "input"  # auto: an INT8 IR's fp32 parent where the CPU lacks INT8 dot products
    subset_size: int = Field(300, ge=1, le=10_000)  # int8: calibration captions (train split)
    validation_size: int = Field(200, ge=4, le=10_000)  # captions of the val split the cosine is taken over
    max_drop: float = Field(0.002, gt=0, le=1)  # int8: allowed drop of the mean cosine to fp32 MiniLM
    text_layers: int | None = Field(None, ge=1, le=5)  # a shallower MiniLM distilled on the train captions
    text_steps: int = Field(1000, ge=1, le=1_000_000)  # its distillation steps (batch 64)
    text_lr: float = Field(1e-3, gt=0, le=1)  # its peak learning rate (one-cycle)


def _auto_text_precision(backend: str) -> tuple[str, str]:
    """``text_encoder: auto`` on this machine: ("int8" | "fp32", why, for the log)."""
    if backend != "openvino":
        return "fp32", "the INT8 text encoder is built for OpenVINO; this bundle runs onnxruntime"
    found, hardware = fast_int8()
    if found:
        return "int8", f"this CPU has INT8 dot-product instructions ({hardware})"
    return "fp32", f"this CPU has no INT8 dot-product instructions ({hardware}): INT8 would run slower than fp32"


def _generator(src: Artifact, ctx: PassContext, asked: str) -> tuple[Artifact, str]:
    """The generator to bundle, and its precision ("int8" | "fp32"): ``src``, or for ``generator: auto`` on a CPU
    without INT8 dot products the fp32 OpenVINO IR that ``src`` (an NNCF INT8 IR) was quantised from."""
    int8 = src.producer.get("pass") in ("quantize_nncf", "quantize_ort")
    precision = "int8" if int8 else "fp32"
    if asked != "auto" or not int8:
        return src, precision
    found, hardware = fast_int8()
    if found or src.format != "openvino":
        ctx.log(f"bundle: generator auto: int8 ({hardware if found else 'not an OpenVINO IR'})")
        return src, precision
    parent = ctx.ancestor(src)
    if parent is None or parent.format != "openvino":
        ctx.log(f"bundle: generator auto: int8 (this CPU has no INT8 dot-product instructions ({hardware}), but the "
                "fp32 IR it was quantised from is not in this run folder)")
        return src, precision
    ctx.log(f"bundle: generator auto: fp32, the IR {src.id} was quantised from ({parent.id}): this CPU has no INT8 "
            f"dot-product instructions ({hardware}), where INT8 runs no faster than fp32")
    return parent, "fp32"


def _tokenized(tokenizer, captions: list[str]) -> list[dict[str, np.ndarray]]:
    """One {input_ids, attention_mask} dict per caption (batch 1, its own length), as the bundle tokenises."""
    found = []
    for encoded in (tokenizer.encode(caption) for caption in captions):  # one at a time: no padding
        found.append({"input_ids": np.array([encoded.ids], dtype=np.int64),
                      "attention_mask": np.array([encoded.attention_mask], dtype=np.int64)})
    return found


def _constant(node) -> np.ndarray | None:
    return node.get_data() if node.get_type_name() == "Constant" else None


def _dequantised_table(node) -> dict[str, np.ndarray] | None:
    """The table feeding the lookup, as stored: a float Constant, or ``(Convert(int8) [- zero point]) * scale``
    (how NNCF and OpenVINO store a compressed table). None for any other form (the lookup then stays in the graph)."""
    if (table := _constant(node)) is not None:
        return {"table": table}
    if node.get_type_name() != "Multiply":
        return None
    scale = next((c for c in map(_constant, (v.get_node() for v in node.input_values())) if c is not None), None)
    rest = next((v.get_node() for v in node.input_values() if _constant(v.get_node()) is None), None)
    found = {"scale": scale.astype(np.float32)} if scale is not None and rest is not None else None
    if found and rest.get_type_name() == "Subtract":
        values = [v.get_node() for v in rest.input_values()]
        zero_point = values[1].input_value(0).get_node() if values[1].get_type_name() == "Convert" else values[1]
        if _constant(zero_point) is None:
            return None
        found["zero_point"], rest = _constant(zero_point).astype(np.float32), values[0]
    if found and rest.get_type_name() == "Convert" and (table := _constant(rest.input_value(0).get_node())) is not None:
        return {"table": table, **found}
    return None


def split_word_embeddings(model, vocab_size: int, out_dir: Path):
    """Move the word-embedding lookup (a Gather on a ``vocab_size``-row table) out of ``model``: the table and
    its dequantisation constants to ``.npy`` files, a new ``inputs_embeds`` input in the Gather's place.
    Returns (model, the bundle spec's ``word_embeddings`` entry), or (model, None) when no such lookup is found."""
    import openvino as ov

    for op in model.get_ordered_ops():
        data = op.input_value(0) if op.get_type_name() == "Gather" else None
        if data is None or not data.get_partial_shape().is_static or data.get_shape()[0] != vocab_size:
            continue
        stored = _dequantised_table(data.get_node())
        if stored is None:
            return model, None
        spec = {"input": WORD_EMBEDDINGS_INPUT}
        for key, values in stored.items():
            spec[key] = "word_embeddings.npy" if key == "table" else f"word_embedding_{key}s.npy"
            np.save(out_dir / spec[key], values)
        hidden = int(data.get_shape()[1])
        param = ov.op.Parameter(ov.Type.f32, ov.PartialShape([-1, -1, hidden]))
        param.set_friendly_name(WORD_EMBEDDINGS_INPUT)
        param.output(0).get_tensor().set_names({WORD_EMBEDDINGS_INPUT})
        for target in op.output(0).get_target_inputs():
            target.replace_source_output(param.output(0))
        cut = ov.Model(model.get_results(), [*model.get_parameters(), param], model.get_friendly_name())
        cut.validate_nodes_and_infer_types()
        return cut, spec
    return model, None


def _mean_cosine(compiled, items: list[dict], reference: list[np.ndarray]) -> tuple[float, list[float]]:
    """Mean cosine of the pooled vectors (unit norm: the dot product) to the fp32 ones."""
    per_item = [float(np.sum(compiled(item)[0] * ref)) for item, ref in zip(items, reference)]
    return float(np.mean(per_item)), per_item


class Bundle(Pass):
    name = "bundle"
    about = ("tokenizer + MiniLM text encoder (whole, or its first layers distilled on the captions; fp32, or INT8 "
             "with accuracy control) + generator: runs without torch")
    Config = BundleConfig
    accepts = ("openvino", "onnx")
    produces = "bundle"
    # 6: generator: auto, the generator's precision in bundle.json; 5: generate.py, the bundle's own runner (bump
    # when the runner's output changes); 4: text_layers; 3: word embeddings out of the graph, captions padded to a
    # multiple of 8; 2: own length; 1: 128
    version = "6"
    libraries = ("openvino", "nncf", "onnxruntime", "tokenizers")
    needs = ("captions",)
    metrics = {"text_cosine_vs_fp32": PassMetric("", "higher", "mean cosine of the bundle's sentence vectors to "
                                                               "fp32 MiniLM's, validation captions"),
               "bundle_size_mb": PassMetric("MiB", "lower", "every file of the bundle")}

    @classmethod
    def machine_key(cls, config) -> dict:
        # the shallow text encoder trains in bf16 where native, else fp32 (compresskit.hardware): different weights;
        # text_encoder auto is INT8 or fp32 by the CPU
        key = {"text_bf16": resolved_bf16("auto")} if config.text_layers else {}
        int8 = fast_int8()[0]
        key |= {"text_int8": int8} if config.text_encoder == "auto" else {}
        return key | ({"generator_int8": int8} if config.generator == "auto" else {})

    def run(self, src: Artifact, out_dir: Path, ctx: PassContext) -> PassResult:
        import openvino as ov

        from ..models.inputs import input_names  # torch / transformers / the runtime: only when the pass runs
        from ..text.encoder import MAX_TOKENS  # torch / transformers / the runtime: only when the pass runs
        from ..text.export import (  # torch / transformers / the runtime: only when the pass runs
            TOKENIZER_FILE,
            text_encoder_onnx,
            tokenizer_file,
        )

        cfg = self.config
        backend = "openvino" if src.format == "openvino" else "onnxruntime"
        precision = cfg.text_encoder
        if precision == "auto":
            precision, why = _auto_text_precision(backend)
            ctx.log(f"bundle: text_encoder auto: {precision} ({why})")
        generator, generator_precision = _generator(src, ctx, cfg.generator)
        if precision == "int8" and backend != "openvino":
            raise PassFailed("bundle: text_encoder: int8 is built with NNCF for OpenVINO; bundle an OpenVINO "
                             "generator (after export_openvino) or use text_encoder: fp32")
        shutil.copyfile(tokenizer_file(), out_dir / TOKENIZER_FILE)
        tokenizer = load_tokenizer(out_dir / TOKENIZER_FILE, MAX_TOKENS, pad_to_multiple_of=PAD_TO_MULTIPLE_OF)
        val_items = _tokenized(tokenizer, ctx.captions(cfg.validation_size, seed=ctx.seed + 7, split="val"))
        core = ov.Core()
        full_path = text_encoder_onnx()
        full = core.compile_model(str(full_path), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
        reference = [full(item)[0][0] for item in val_items]  # the full fp32 MiniLM: what every cosine is to
        del full
        onnx_path = (full_path if cfg.text_layers is None
                     else ctx.shallow_text_encoder(cfg.text_layers, cfg.text_steps, cfg.text_lr, step="bundle"))
        if backend == "onnxruntime":
            text_file = "text_encoder.onnx"
            shutil.copyfile(onnx_path, out_dir / text_file)
            generator_file = "generator.onnx"
            shutil.copyfile(src.file(ONNX_FILE), out_dir / generator_file)
            lookup = None
            cosine = self._bundled_cosine(out_dir, text_file, lookup, val_items, reference)
        else:
            text_file, generator_file = "text_encoder.xml", "generator.xml"
            model = ov.convert_model(str(onnx_path))
            if precision == "int8":
                import nncf

                calib = _tokenized(tokenizer, ctx.captions(cfg.subset_size, seed=ctx.seed))
                model = nncf.quantize_with_accuracy_control(
                    model, nncf.Dataset(calib), nncf.Dataset(val_items),
                    validation_fn=lambda compiled, data: _mean_cosine(compiled, list(data), reference),
                    max_drop=cfg.max_drop, drop_type=nncf.DropType.ABSOLUTE, subset_size=cfg.subset_size,
                    model_type=nncf.ModelType.TRANSFORMER, preset=nncf.QuantizationPreset.MIXED)
            # saved once first: NNCF's INT8 weights become int8 constants (with their scales) when saved
            whole = out_dir / "whole" / text_file
            ov.save_model(model, str(whole), compress_to_fp16=False)
            model, lookup = split_word_embeddings(core.read_model(str(whole)), tokenizer.get_vocab_size(), out_dir)
            stable_names(model)  # OpenVINO's auto names count per process: the same bundle, byte for byte, on a rerun
            ov.save_model(model, str(out_dir / text_file), compress_to_fp16=False)
            del model
            shutil.rmtree(whole.parent)
            cosine = self._bundled_cosine(out_dir, text_file, lookup, val_items, reference)
            for suffix in (".xml", ".bin"):
                shutil.copyfile(generator.file(OPENVINO_XML).with_suffix(suffix), out_dir / f"generator{suffix}")
        spec = {"format": BUNDLE_FORMAT, "tokenizer": TOKENIZER_FILE, "max_tokens": MAX_TOKENS,
                "pad_id": tokenizer.token_to_id("[PAD]"), "pad_token": "[PAD]",
                "pad_to_multiple_of": PAD_TO_MULTIPLE_OF,
                "text_encoder": {"file": text_file, "backend": backend, "precision": precision,
                                 "layers": cfg.text_layers or 6, "outputs": ["pooled", "hidden"],
                                 "word_embeddings": lookup},
                "generator": {"file": generator_file, "backend": backend, "precision": generator_precision, "io": src.io,
                              "input_order": input_names(src.io)}}
        (out_dir / BUNDLE_FILE).write_text(json.dumps(spec, indent=1) + "\n")
        # the runner a device uses without compresskit (the step's manifest checksums it with the other files)
        shutil.copyfile(standalone_generate.__file__, out_dir / standalone_generate.RUNNER_FILE)
        size = sum(p.stat().st_size for p in out_dir.iterdir() if p.is_file()) / 2**20
        return PassResult(metrics={"text_cosine_vs_fp32": cosine, "bundle_size_mb": size},
                          details={"text_encoder": precision, "text_encoder_asked": cfg.text_encoder,
                                   "generator": generator_precision, "generator_asked": cfg.generator,
                                   "generator_artifact": generator.id,
                                   "text_layers": cfg.text_layers or 6,
                                   "backend": backend, "validation_captions": len(val_items)})

    @staticmethod
    def _bundled_cosine(out_dir: Path, text_file: str, lookup: dict | None, items: list[dict],
                        reference: list[np.ndarray]) -> float:
        """The saved text encoder's cosine to fp32 MiniLM, run as the bundle runs it (the lookup in numpy)."""
        import openvino as ov

        from ..runtimes.bundle import WordEmbeddings  # torch / transformers / the runtime: only when the pass runs

        if text_file.endswith(".onnx"):
            import onnxruntime as ort

            session = ort.InferenceSession(str(out_dir / text_file), providers=["CPUExecutionProvider"])
            return _mean_cosine(lambda item: session.run(["pooled"], item), items, reference)[0]
        compiled = ov.Core().compile_model(str(out_dir / text_file), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
        words = WordEmbeddings(out_dir, lookup) if lookup else None
        items = [{**item, **({words.input: words(item["input_ids"])} if words else {})} for item in items]
        return _mean_cosine(compiled, items, reference)[0]
