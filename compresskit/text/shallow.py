"""A shallower MiniLM for a known caption set: its first ``layers`` layers, distilled to the full model's
sentence vector on the captions the generator serves (issue 19: "a smaller encoder where it pays").

    bert = distill_shallow_encoder(train_captions, layers=3, steps=1000, lr=1e-3)
    export_text_encoder(path, bert)     # text.export: the same graph form as the full MiniLM
    path = shallow_encoder_onnx(train_captions, layers=3, ...)  # both, cached by captions and settings

The student starts as MiniLM cut after ``layers`` layers (cut alone it is useless: cosine ~0.4 to the full
vector) and learns, with AdamW and a one-cycle schedule, to give the full model's pooled, L2-normalised
vector (loss 1 - cosine) for batches of the train captions, and with ``tokens`` its last token states too (for
a generator that reads them; ``token_state_error``). The word/position embeddings stay MiniLM's own
(frozen), so the bundle's embedding table is unchanged and only the layers are trained, without dropout.
Forward and backward run under bfloat16 autocast where the CPU computes bf16 natively (``compresskit.hardware``;
the weights stay float32): 2.2x faster a step on an AVX512-BF16 EPYC, same cosine; fp32 elsewhere (emulated bf16
is 26-47x slower).
What the cut costs is judged where it matters, in the generator's images (``benchmarks/text_encoder_layers.py``,
and the bench of a bundle built with ``text_layers``).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from importlib.metadata import version
from pathlib import Path

import torch

from ..cache import atomic_dir, cache_root, stable_hash
from ..hardware import BF16, autocast, training_precision
from .encoder import MAX_TOKENS, MODEL_NAME, PACKAGE, TextEncoder, load_minilm, mean_pool
from .export import OPSET, TEXT_ONNX, export_text_encoder

VERSION = "3"  # of the distillation below: part of the cache key (3: no dropout)


def cut_encoder(bert, layers: int):
    """A copy of ``bert`` keeping its first ``layers`` transformer layers."""
    total = len(bert.encoder.layer)
    if not 1 <= layers < total:
        raise ValueError(f"a shallower {MODEL_NAME} keeps 1 to {total - 1} of its {total} layers, not {layers}")
    cut = copy.deepcopy(bert)
    cut.encoder.layer = cut.encoder.layer[:layers]
    cut.config.num_hidden_layers = layers
    return cut


def encode_pooled(bert, tokenizer, captions: Sequence[str], batch: int = 256) -> torch.Tensor:
    """``bert``'s sentence vectors (N, 384), pooled as ``TextEncoder.encode`` pools, float32, no grad."""
    found = []
    with torch.no_grad():
        for start in range(0, len(captions), batch):
            tokens = tokenizer(list(captions[start:start + batch]), padding=True, truncation=True,
                               max_length=MAX_TOKENS, return_tensors="pt")
            hidden = bert(input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"]).last_hidden_state
            found.append(mean_pool(hidden.float(), tokens["attention_mask"]))
    return torch.cat(found) if found else torch.empty(0, bert.config.hidden_size)


def token_state_error(hidden: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Squared error of the token states over the real tokens, relative to the targets' energy there."""
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    return ((hidden - target) ** 2 * weights).sum() / ((target ** 2) * weights).sum().clamp_min(1e-9)


def split_by_length(rows: torch.Tensor, lengths: torch.Tensor) -> list[torch.Tensor]:
    """``rows`` sorted by token length and cut in two where the two parts' padded tokens are fewest."""
    rows = rows[torch.argsort(lengths[rows], stable=True)]
    sizes = lengths[rows]
    if len(rows) < 2:
        return [rows]
    longest = int(sizes[-1])
    cost = [k * int(sizes[k - 1]) + (len(rows) - k) * longest for k in range(1, len(rows))]
    cut = 1 + min(range(len(cost)), key=cost.__getitem__)
    return [rows[:cut], rows[cut:]]


def pad_rows(ids: list[list[int]], rows: torch.Tensor, pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(input_ids, attention_mask), both (len(rows), longest), of the token-id lists ``ids[rows]``, right-padded."""
    chosen = [ids[r] for r in rows.tolist()]
    longest = max(len(row) for row in chosen)
    input_ids = torch.full((len(chosen), longest), pad_id, dtype=torch.long)
    mask = torch.zeros((len(chosen), longest), dtype=torch.long)
    for i, row in enumerate(chosen):
        input_ids[i, :len(row)] = torch.tensor(row)
        mask[i, :len(row)] = 1
    return input_ids, mask


def distill_shallow_encoder(captions: Sequence[str], *, layers: int = 3, steps: int = 1000, lr: float = 1e-3,
                            batch_size: int = 64, seed: int = 0, tokens: bool = False, bf16: BF16 = "auto",
                            progress: Callable[[int, int, dict], None] | None = None):
    """MiniLM cut to ``layers`` layers and distilled to the full model's vectors of ``captions`` (train
    captions: tune on val); with ``tokens``, to its last token states as well (``token_state_error``: for a
    generator that reads them). ``bf16``: autocast where native ("auto"), forced on or off. Returns the
    shallower model (eval mode, eager attention)."""
    captions = sorted(set(captions))
    precision = training_precision(bf16, "cpu")
    if not captions:
        raise ValueError("distilling a shallower text encoder needs captions; the dataset gave none")
    tokenizer, full = load_minilm()
    encoder = TextEncoder()  # the full model's vectors and token states (cached on disk, like every embedding)
    targets = encoder.encode(captions)
    states = encoder.encode_tokens(captions) if tokens else None
    # eval mode: MiniLM's dropout (0.1) off. The targets are fixed vectors of the captions served, so there is
    # nothing to regularise against: without it a step is ~11% faster and val cosine higher (600 steps at lr 3e-3,
    # AVX512-BF16: 0.990 vs 0.980; 400 steps 0.982). Gradients flow in eval mode as in train mode.
    student = cut_encoder(full, layers).eval()
    del full
    student.embeddings.requires_grad_(False)
    trained = [p for p in student.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(trained, lr=lr, weight_decay=0.0)
    # warm-up over 5% of the steps, at least 2 (OneCycleLR divides by zero where the warm-up ends on step 0)
    warmup = max(0.05, 2.0 / steps) if steps > 2 else 0.3
    schedule = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=warmup)
    ids = [tokenizer(caption, truncation=True, max_length=MAX_TOKENS)["input_ids"] for caption in captions]
    lengths = torch.tensor([len(row) for row in ids])
    rng = torch.Generator().manual_seed(seed)
    mean_loss = 0.0
    for step in range(steps):
        rows = torch.randint(len(captions), (batch_size,), generator=rng)
        # the batch's mean loss, summed over two sub-batches of similar lengths (the same gradient as one padded
        # batch, with ~30% fewer padded tokens run through the layers: 20% less time a step)
        energy = None
        if states is not None:  # the token-state error's denominator: the whole batch's target energy
            energy = sum(float((states.hidden[r, :int(lengths[r])] ** 2).sum()) for r in rows.tolist())
        opt.zero_grad(set_to_none=True)
        step_loss = 0.0
        for part in split_by_length(rows, lengths):
            input_ids, mask = pad_rows(ids, part, tokenizer.pad_token_id)
            with autocast("cpu", precision):
                hidden = student(input_ids=input_ids, attention_mask=mask).last_hidden_state
            pooled = mean_pool(hidden.float(), mask)
            loss = (1 - (pooled * targets[part]).sum(1)).sum() / batch_size
            if states is not None:
                weights = mask.unsqueeze(-1).float()
                error = ((hidden.float() - states.hidden[part, :mask.shape[1]]) ** 2 * weights).sum()
                loss = loss + error / max(energy, 1e-9)
            loss.backward()
            step_loss += loss.item()
        opt.step()
        schedule.step()
        mean_loss += (step_loss - mean_loss) / min(step + 1, 50)
        if progress and ((step + 1) % 100 == 0 or step + 1 == steps):
            progress(step + 1, steps, {"loss": round(mean_loss, 5)})
    return student  # in eval mode since the start (no dropout)


def shallow_encoder_onnx(captions: Sequence[str], *, layers: int, steps: int, lr: float, batch_size: int = 64,
                         seed: int = 0, tokens: bool = False, bf16: BF16 = "auto",
                         progress: Callable[[int, int, dict], None] | None = None) -> Path:
    """``distill_shallow_encoder`` exported as ``text.export`` exports MiniLM, cached under
    ``cache_root()/text-encoder-shallow/<key>``: recipes that distil the same captions with the same settings
    (and package versions) share one encoder."""
    captions = sorted(set(captions))
    precision = training_precision(bf16, "cpu")  # bf16 and fp32 train different weights: both in the key
    key = {"captions": stable_hash(captions, 32), "layers": layers, "steps": steps, "lr": lr, "batch": batch_size,
           "seed": seed, "tokens": tokens, "version": VERSION, "opset": OPSET, "bf16": precision.bf16,
           **{name: version(name) for name in (PACKAGE, "torch", "transformers")}}
    folder = cache_root() / "text-encoder-shallow" / stable_hash(key)
    if not (folder / TEXT_ONNX).exists():
        bert = distill_shallow_encoder(captions, layers=layers, steps=steps, lr=lr, batch_size=batch_size,
                                       seed=seed, tokens=tokens, bf16=precision.bf16, progress=progress)
        with atomic_dir(folder) as tmp:
            export_text_encoder(tmp / TEXT_ONNX, bert)
    return folder / TEXT_ONNX
