"""How far a shallower text encoder goes: MiniLM cut to its first ``--layers`` layers, then distilled to the full
model's sentence vector on the dataset's train captions (issue 19: "a smaller encoder where it pays").

The bundle's caption -> image time is mostly MiniLM (six layers); the generator after it takes ~0.17 ms. This
study measures what fewer layers cost where it matters, in the images:

1. the cut encoder's pooled vector against the full model's on the **val** captions (cosine), cut alone and
   after ``--steps`` of distillation (AdamW, one-cycle to ``--lr``, batch 64, loss 1 - cosine, train captions);
2. the R-precision of the teacher generator's images drawn from each set of vectors for the val captions (one
   image per caption, noise seed 0), scored as ``compresskit eval`` scores it (the shipped aligner, 99
   distractors from the train + val captions, caption vectors from the full MiniLM);
3. both encoders exported as a bundle exports MiniLM (``text.export``: pooling inside, dynamic shapes), then
   OpenVINO fp32: p50 of 1,000 calls at 8 tokens, ``--threads`` threads, in this process.

    python benchmarks/text_encoder_layers.py --layers 3 --steps 2500 --lr 3e-4 --model emoji32-base
"""

from __future__ import annotations

import argparse
import copy
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from compresskit.grid import to_images
from compresskit.metrics.alignment import alignment_scores, embed_images, load_aligner
from compresskit.models.io import load_model
from compresskit.passes.calibration import dataset_captions
from compresskit.text.encoder import MAX_TOKENS, mean_pool, model_dir
from compresskit.text.export import export_text_encoder


class Pooled(torch.nn.Module):
    """ids + mask -> the sentence vector, pooled as ``TextEncoder.encode`` pools (``mean_pool``)."""

    def __init__(self, bert: torch.nn.Module):
        super().__init__()
        self.bert = bert

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return mean_pool(hidden, attention_mask)


def encode(model: Pooled, tokenizer, captions: list[str], batch: int = 256) -> torch.Tensor:
    found = []
    for start in range(0, len(captions), batch):
        tokens = tokenizer(captions[start:start + batch], padding=True, truncation=True, max_length=MAX_TOKENS,
                           return_tensors="pt")
        found.append(model(tokens["input_ids"], tokens["attention_mask"]))
    return torch.cat(found)


def openvino_ms(bert: torch.nn.Module, threads: int, folder: Path) -> float:
    """p50 of 1,000 calls at 8 tokens of ``bert`` exported as a bundle exports MiniLM (``text.export``)."""
    import openvino as ov

    path = export_text_encoder(folder / "encoder.onnx", bert)
    compiled = ov.Core().compile_model(ov.convert_model(str(path)), "CPU",
                                       {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": threads})
    request = compiled.create_infer_request()
    inputs = {"input_ids": np.ones((1, 8), np.int64), "attention_mask": np.ones((1, 8), np.int64)}
    for _ in range(300):
        request.infer(inputs)
    timings = []
    for _ in range(1000):
        started = time.perf_counter()
        request.infer(inputs)
        timings.append(time.perf_counter() - started)
    return float(np.median(timings) * 1e3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--layers", type=int, default=3)
    parser.add_argument("--steps", type=int, default=2500)
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--model", default="emoji32-base", help="the generator whose images are scored")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(args.threads)

    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(model_dir()), local_files_only=True)
    full = Pooled(AutoModel.from_pretrained(str(model_dir()), local_files_only=True, use_safetensors=True,
                                            attn_implementation="eager")).eval().requires_grad_(False)
    generator = load_model(args.model).eval()
    data = generator.meta["data"]
    train = sorted(set(dataset_captions(data, 10**6, 0, "train")))
    val = sorted(set(dataset_captions(data, 10**6, 0, "val")))
    pool = sorted(set(train) | set(val))
    with torch.no_grad():
        target_train, target_val, pool_vectors = (encode(full, tokenizer, c) for c in (train, val, pool))

    student = Pooled(copy.deepcopy(full.bert)).requires_grad_(True)
    student.bert.encoder.layer = student.bert.encoder.layer[:args.layers]
    student.bert.config.num_hidden_layers = args.layers
    with torch.no_grad():
        cut = encode(student.eval(), tokenizer, val)
    opt = torch.optim.AdamW(student.parameters(), lr=args.lr, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=args.steps, pct_start=0.05)
    rng = torch.Generator().manual_seed(0)
    student.train()
    started = time.perf_counter()
    for _ in range(args.steps):
        rows = torch.randint(len(train), (64,), generator=rng)
        tokens = tokenizer([train[i] for i in rows], padding=True, truncation=True, max_length=MAX_TOKENS,
                           return_tensors="pt")
        loss = (1 - (student(tokens["input_ids"], tokens["attention_mask"]) * target_train[rows]).sum(1)).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        schedule.step()
    seconds = time.perf_counter() - started
    with torch.no_grad():
        distilled = encode(student.eval(), tokenizer, val)

    aligner, position = load_aligner(), {c: i for i, c in enumerate(pool)}
    noise = np.random.default_rng(0).standard_normal((len(val), generator.config.z_dim))
    z = torch.from_numpy(noise.astype(np.float32))

    def r_precision(vectors: torch.Tensor) -> float:
        with torch.no_grad():
            drawn = [generator(z[i:i + 256], vectors[i:i + 256]) for i in range(0, len(val), 256)]
            images = to_images(torch.cat(drawn))
        return alignment_scores(embed_images(aligner, images), torch.tensor([position[c] for c in val]),
                                pool_vectors)["r_precision"]

    cosine = lambda v: (v * target_val).sum(1)  # noqa: E731
    print(f"{len(train)} train / {len(val)} val captions; {args.layers} of 6 layers; distilled {args.steps} steps "
          f"in {seconds:.0f} s ({args.threads} threads)")
    print(f"val cosine to full MiniLM: cut {cosine(cut).mean():.4f} (min {cosine(cut).min():.4f}), "
          f"distilled {cosine(distilled).mean():.4f} (min {cosine(distilled).min():.4f})")
    stderr = lambda p: (p * (1 - p) / len(val)) ** 0.5  # noqa: E731
    scores = {"full": r_precision(target_val), "cut": r_precision(cut), "distilled": r_precision(distilled)}
    print(f"val R-precision of {args.model}'s images: "
          + ", ".join(f"{k} {v:.3f} ± {stderr(v):.3f}" for k, v in scores.items()))
    with tempfile.TemporaryDirectory() as tmp:
        full_ms = openvino_ms(full.bert, args.threads, Path(tmp))
        student_ms = openvino_ms(student.bert, args.threads, Path(tmp))
    print(f"OpenVINO fp32, 8 tokens, p50: full {full_ms:.3f} ms, {args.layers} layers {student_ms:.3f} ms")


if __name__ == "__main__":
    main()
