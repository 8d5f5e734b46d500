"""How much of a shapes caption's attributes does the MiniLM sentence vector keep?

A linear probe (logistic regression) on the pooled, unit-norm sentence vectors predicts each attribute
of one-shape captions, and, for two-shape captions, which colour sits in the lower-numbered cell (a
binding question), linearly and with a small MLP (the kind of layer the generator conditions through).
Probes learn on the distinct captions of the dataset's train split and are scored on distinct held-out
(val + eval) captions, which are never train captions: the shapes split holds out (colour, shape) pairings
and compositions, so a held-out caption is a new sentence, not a copy.
Run: ``python benchmarks/text_probe.py [--n 4000] [--mlp-n 12000]``. README quotes its output.
"""

from __future__ import annotations

import argparse

import numpy as np

from compresskit.data import build_shapes
from compresskit.data.shapes import ATTRIBUTES
from compresskit.text import TextEncoder


def _probe_accuracy(features: np.ndarray, target: np.ndarray, train: np.ndarray) -> float:
    from sklearn.linear_model import LogisticRegression

    clf = LogisticRegression(max_iter=3000, C=10.0).fit(features[train], target[train])
    return float(clf.score(features[~train], target[~train]))


def distinct_captions(dataset, objects: int) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Distinct captions with exactly ``objects`` shapes: captions, their labels, and whether each is train."""
    seen: dict[str, int] = {}
    for i, caption in enumerate(dataset.captions):
        if int((dataset.labels[i, :, 0] >= 0).sum()) == objects:
            seen.setdefault(caption, i)
    rows = list(seen.values())
    is_train = np.array([dataset.splits[i] == "train" for i in rows])
    assert not {dataset.captions[i] for i in rows if dataset.splits[i] == "train"} & \
        {dataset.captions[i] for i in rows if dataset.splits[i] != "train"}, "a held-out caption is a train caption"
    return [dataset.captions[i] for i in rows], dataset.labels[rows], is_train


def _binding_target(labels: np.ndarray) -> np.ndarray:
    """The colour of the object in the lower-numbered cell."""
    first = np.where(labels[:, 0, 3] < labels[:, 1, 3], 0, 1)
    return labels[np.arange(len(labels)), first, 0]


def probe(n: int = 4000, encoder: TextEncoder | None = None) -> dict[str, float]:
    """Held-out probe accuracy per attribute (one shape) and for colour-to-cell binding (two shapes)."""
    encoder = encoder or TextEncoder()
    captions, labels, train = distinct_captions(build_shapes(n, max_objects=1, seed=11), 1)
    pooled = encoder.encode(captions).numpy()
    scores = {a: _probe_accuracy(pooled, labels[:, 0, k], train) for k, a in enumerate(ATTRIBUTES)}
    held_out_one = float((~train).sum())
    captions, labels, train = distinct_captions(build_shapes(n, max_objects=2, seed=12), 2)
    scores["binding"] = _probe_accuracy(encoder.encode(captions).numpy(), _binding_target(labels), train)
    return {**scores, "held_out_one": held_out_one, "held_out_two": float((~train).sum())}


def mlp_binding(n: int = 12000, epochs: int = 300, encoder: TextEncoder | None = None) -> float:
    """Held-out binding accuracy of a 2-hidden-layer MLP on pooled vectors of distinct two-shape captions."""
    import torch

    encoder = encoder or TextEncoder()
    captions, labels, train = distinct_captions(build_shapes(n, max_objects=2, seed=12), 2)
    x = encoder.encode(captions) * 10
    y = torch.from_numpy(_binding_target(labels).astype(np.int64))
    train = torch.from_numpy(train)
    x_train, y_train = x[train], y[train]
    torch.manual_seed(0)
    mlp = torch.nn.Sequential(torch.nn.Linear(384, 512), torch.nn.LeakyReLU(0.2),
                              torch.nn.Linear(512, 512), torch.nn.LeakyReLU(0.2), torch.nn.Linear(512, 6))
    optimizer = torch.optim.Adam(mlp.parameters(), 1e-3)
    for _ in range(epochs):
        order = torch.randperm(len(y_train))
        for start in range(0, len(y_train), 256):
            batch = order[start : start + 256]
            loss = torch.nn.functional.cross_entropy(mlp(x_train[batch]), y_train[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    with torch.no_grad():
        return float((mlp(x[~train]).argmax(1) == y[~train]).float().mean())


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=4000)
    parser.add_argument("--mlp-n", type=int, default=12000)
    args = parser.parse_args()
    text_encoder = TextEncoder()
    scores = probe(args.n, text_encoder)
    print(f"held-out distinct captions: {scores.pop('held_out_one'):.0f} one-shape, {scores.pop('held_out_two'):.0f} "
          "two-shape; none of them a train caption")
    for name, accuracy in scores.items():
        print(f"{name:12s} {accuracy:.3f}  (linear)")
    print(f"{'binding':12s} {mlp_binding(args.mlp_n, encoder=text_encoder):.3f}  (MLP 384-512-512-6)")
