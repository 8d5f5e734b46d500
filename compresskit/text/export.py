"""MiniLM as a deployable graph, for bundles that turn a caption into an image without torch.

    path = text_encoder_onnx()     # cache_root()/text-encoder/<hash>/text_encoder.onnx, built once

The graph reads ``input_ids`` and ``attention_mask`` (int64, (N, L): the ``tokenizers`` output of the
package's own ``tokenizer.json``, padded to the batch's longest caption, cut at ``MAX_TOKENS``) and gives
``pooled`` (N, 384: the masked mean of the last hidden states, L2-normalised — ``TextEncoder.encode``'s
recipe, inside the graph) and ``hidden`` (N, L, 384: the token states ``encode_tokens`` reads). Batch and
length are dynamic. The export runs BERT with eager attention (the SDPA path does not trace to ONNX).
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..cache import atomic_dir, cache_root, stable_hash
from .encoder import MAX_TOKENS, PACKAGE, load_minilm, mean_pool, minilm_tokenizer, model_dir

TEXT_ONNX = "text_encoder.onnx"
TOKENIZER_FILE = "tokenizer.json"
INPUTS = ("input_ids", "attention_mask")
OUTPUTS = ("pooled", "hidden")
OPSET = 17


def text_encoder_onnx() -> Path:
    """The exported text encoder (built on first use for this package, torch and transformers version)."""
    from importlib.metadata import version

    key = {name: version(name) for name in (PACKAGE, "torch", "transformers")} | {"opset": OPSET}
    folder = cache_root() / "text-encoder" / stable_hash(key)
    if not (folder / TEXT_ONNX).exists():
        with atomic_dir(folder) as tmp:
            export_text_encoder(tmp / TEXT_ONNX)
    return folder / TEXT_ONNX


def export_text_encoder(path: Path, bert=None) -> Path:
    """MiniLM (or ``bert``: a model of its family in its place, e.g. a shallower one, loaded with
    ``attn_implementation="eager"``) with pooling inside, to ONNX."""
    tokenizer, bert = load_minilm(eager=True) if bert is None else (minilm_tokenizer(), bert.eval())

    class Pooled(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.bert = bert

        def forward(self, input_ids, attention_mask):
            hidden = self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            return mean_pool(hidden, attention_mask), hidden

    example = tokenizer(["red apple", "a large red circle at the top left"], padding=True, truncation=True,
                        max_length=MAX_TOKENS, return_tensors="pt")
    dynamic = {"input_ids": {0: "batch", 1: "length"}, "attention_mask": {0: "batch", 1: "length"},
               "pooled": {0: "batch"}, "hidden": {0: "batch", 1: "length"}}
    with torch.no_grad():
        torch.onnx.export(Pooled(), (example["input_ids"], example["attention_mask"]), str(path),
                          input_names=list(INPUTS), output_names=list(OUTPUTS), dynamic_axes=dynamic,
                          opset_version=OPSET, dynamo=False)
    return path


def tokenizer_file() -> Path:
    return model_dir() / TOKENIZER_FILE
