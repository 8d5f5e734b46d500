"""How far a shallower text encoder goes: MiniLM cut to its first ``--layers`` layers, then distilled to the full
model's sentence vector on the dataset's train captions (issue 19: "a smaller encoder where it pays").

The bundle's caption -> image time is mostly MiniLM (six layers); the generator after it takes ~0.17 ms. This
study measures what fewer layers cost where it matters, in the images:

1. the cut encoder's pooled vector against the full model's on the **val** captions (cosine), cut alone and
   after ``--steps`` of distillation (``text.shallow``: AdamW, one-cycle to ``--lr``, loss 1 - cosine, train
   captions, the embeddings frozen, bfloat16 autocast);
2. the R-precision of the teacher generator's images drawn from each set of vectors for the val captions (one
   image per caption, noise seed 0), scored as ``compresskit eval`` scores it (the shipped aligner, 99
   distractors from the train + val captions, caption vectors from the full MiniLM);
3. both encoders exported as a bundle exports MiniLM (``text.export``: pooling inside, dynamic shapes), then
   OpenVINO fp32: p50 of 1,000 calls at 8 tokens, ``--threads`` threads, in this process.

    python benchmarks/text_encoder_layers.py --layers 3 --steps 1000 --lr 1e-3 --model emoji32-base
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from compresskit.grid import to_images
from compresskit.metrics.alignment import alignment_scores, embed_images, load_aligner
from compresskit.models.io import load_model
from compresskit.passes.calibration import dataset_captions
from compresskit.text.export import export_text_encoder
from compresskit.text.shallow import cut_encoder, distill_shallow_encoder, encode_pooled, load_minilm


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
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--model", default="emoji32-base", help="the generator whose images are scored")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(args.threads)

    tokenizer, full = load_minilm()
    generator = load_model(args.model).eval()
    data = generator.meta["data"]
    train = sorted(set(dataset_captions(data, 10**6, 0, "train")))
    val = sorted(set(dataset_captions(data, 10**6, 0, "val")))
    pool = sorted(set(train) | set(val))
    target_val, pool_vectors = (encode_pooled(full, tokenizer, c) for c in (val, pool))
    cut = encode_pooled(cut_encoder(full, args.layers), tokenizer, val)
    started = time.perf_counter()
    student = distill_shallow_encoder(train, layers=args.layers, steps=args.steps, lr=args.lr,
                                      batch_size=args.batch_size)
    seconds = time.perf_counter() - started
    distilled = encode_pooled(student, tokenizer, val)

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
          f"(batch {args.batch_size}) in {seconds:.0f} s ({args.threads} threads)")
    print(f"val cosine to full MiniLM: cut {cosine(cut).mean():.4f} (min {cosine(cut).min():.4f}), "
          f"distilled {cosine(distilled).mean():.4f} (min {cosine(distilled).min():.4f})")
    stderr = lambda p: (p * (1 - p) / len(val)) ** 0.5  # noqa: E731
    scores = {"full": r_precision(target_val), "cut": r_precision(cut), "distilled": r_precision(distilled)}
    print(f"val R-precision of {args.model}'s images: "
          + ", ".join(f"{k} {v:.3f} ± {stderr(v):.3f}" for k, v in scores.items()))
    with tempfile.TemporaryDirectory() as tmp:
        full_ms = openvino_ms(full, args.threads, Path(tmp))
        student_ms = openvino_ms(student, args.threads, Path(tmp))
    print(f"OpenVINO fp32, 8 tokens, p50: full {full_ms:.3f} ms, {args.layers} layers {student_ms:.3f} ms")


if __name__ == "__main__":
    main()
