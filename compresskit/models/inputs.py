"""A generator's inputs, built from its io spec (``contract.io_spec``), for every caller alike.

    inputs = caption_inputs(io, ["a red circle"], z)    # {"z", "text"[, "tokens", "token_mask"]}: numpy float32
    inputs = random_inputs(io, batch=2, seed=0)          # seeded caption-like inputs (parity, tracing, timing)
    images = call_torch(generator, inputs)               # positional, in the io spec's order

Every generator reads noise ``z`` and the pooled, unit-norm MiniLM caption vector ``text``. A
token-conditioned generator also reads the caption's MiniLM token states ``tokens`` (zero-padded, or cut, to
the spec's fixed length: a static shape exports and quantises simply) and ``token_mask`` (1 on tokens,
0 on padding). Training, distillation, calibration, export, evaluation, the bench and ``generate`` all build
inputs here, so a new input kind is added in one place.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ..text import TextEncoder
from .contract import io_spec

TOKEN_INPUTS = ("tokens", "token_mask")
ORDER = ("z", "text", *TOKEN_INPUTS)  # the positional order of ``forward``; a manifest's JSON keeps no order


def input_names(io: dict) -> list[str]:
    """The io spec's inputs in ``forward``'s positional order."""
    rank = {name: i for i, name in enumerate(ORDER)}
    return sorted(io["inputs"], key=lambda name: (rank.get(name, len(ORDER)), name))


def token_length(io: dict) -> int | None:
    """The fixed token length of a token-conditioned generator; None when it reads the pooled vector only."""
    tokens = io["inputs"].get("tokens")
    return int(tokens["shape"][1]) if tokens else None


def text_inputs(io: dict, captions: Sequence[str], encoder=None) -> dict[str, np.ndarray]:
    """The caption side of the inputs: ``text``, plus ``tokens`` and ``token_mask`` if the spec names them."""
    encoder = encoder or TextEncoder()
    length = token_length(io)
    if not length:
        return {"text": encoder.encode(captions).numpy()}
    text, features = encoder.encode_with_tokens(captions, pad_to=length)
    return {"text": text.numpy(), "tokens": features.hidden[:, :length].numpy(),
            "token_mask": features.mask[:, :length].float().numpy()}


def caption_inputs(io: dict, captions: Sequence[str], z: np.ndarray | torch.Tensor, encoder=None) -> dict[str, np.ndarray]:
    """Row i: caption i with noise row i."""
    z = z.numpy() if isinstance(z, torch.Tensor) else z
    return {"z": np.ascontiguousarray(z, dtype=np.float32), **text_inputs(io, captions, encoder)}


def random_inputs(io: dict, batch: int, seed: int) -> dict[str, np.ndarray]:
    """Standard normal ``z``, unit-norm ``text`` and (token models) normal token states with 3 to L real tokens."""
    rng = np.random.default_rng(seed)
    spec = io["inputs"]
    text = rng.standard_normal((batch, spec["text"]["shape"][1])).astype(np.float32)
    found = {"z": rng.standard_normal((batch, spec["z"]["shape"][1])).astype(np.float32),
             "text": text / np.linalg.norm(text, axis=1, keepdims=True)}
    length = token_length(io)
    if length:
        found["tokens"] = rng.standard_normal((batch, length, spec["tokens"]["shape"][2])).astype(np.float32)
        lengths = rng.integers(min(3, length), length + 1, size=batch)
        found["token_mask"] = (np.arange(length)[None, :] < lengths[:, None]).astype(np.float32)
        found["tokens"] *= found["token_mask"][:, :, None]
    return {name: found[name] for name in input_names(io)}


def rows(inputs: dict, start: int, stop: int) -> dict:
    """Rows ``[start, stop)`` of every input."""
    return {name: value[start:stop] for name, value in inputs.items()}


def stack_rows(parts: Sequence[dict]) -> dict:
    """Input dicts joined along the batch (the inverse of ``rows``)."""
    return {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}


def as_tensors(inputs: dict, device: torch.device | str | None = None) -> dict[str, torch.Tensor]:
    return {name: (torch.from_numpy(v) if isinstance(v, np.ndarray) else v).to(device or "cpu")
            for name, v in inputs.items()}


def call_torch(generator: torch.nn.Module, inputs: dict) -> torch.Tensor:
    """``generator(*inputs)`` in its io spec's order (numpy or tensors in, a tensor out)."""
    tensors = as_tensors(inputs, next(generator.parameters()).device)
    return generator(*(tensors[name] for name in input_names(io_spec(generator))))
