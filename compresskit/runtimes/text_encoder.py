"""An exported text encoder run as a bundle runs it: captions -> the generator's caption inputs.

    inputs = encoder_onnx_inputs(path, io_spec(teacher), captions)   # {"text"[, "tokens", "token_mask"]}

Distillation and ``select_subnet`` train or score a student against the caption vectors a (shallower) bundle
encoder will give on the device, not the full MiniLM's: the graph is ``text.export``'s, run in ONNX Runtime
(fp32), and its outputs become generator inputs through the bundle's own ``generator_text_inputs``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..models.inputs import stack_rows
from ..text.encoder import MAX_TOKENS, minilm_tokenizer
from ..text.export import INPUTS
from .bundle import generator_text_inputs


def encoder_onnx_inputs(path: Path, io: dict, captions: Sequence[str], batch: int = 256) -> dict:
    """The generator's caption inputs (``text``[, ``tokens``, ``token_mask``], numpy) as an exported text encoder
    (``export_text_encoder``'s graph, fp32, ONNX Runtime) gives them: what a bundle built on it feeds the generator."""
    import onnxruntime as ort  # heavy optional backend: imported when a graph is run

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    tokenizer = minilm_tokenizer()
    parts = []
    for start in range(0, len(captions), batch):
        encoded = tokenizer(list(captions[start:start + batch]), padding=True, truncation=True,
                            max_length=MAX_TOKENS, return_tensors="np")
        ids, mask = (encoded[name].astype(np.int64) for name in INPUTS)
        pooled, hidden = session.run(None, dict(zip(INPUTS, (ids, mask))))
        parts.append(generator_text_inputs(io, pooled, hidden, mask))
    return stack_rows(parts)
