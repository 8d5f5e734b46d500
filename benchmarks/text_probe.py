"""How much of a shapes caption's attributes does the MiniLM sentence vector keep?

A linear probe (logistic regression) on the pooled, unit-norm sentence vectors predicts each attribute
of one-shape captions, and, for two-shape captions, which colour sits in the lower-numbered cell (a
binding question), linearly and with a small MLP (the kind of layer the generator conditions through).
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


def probe(n: int = 4000, encoder: TextEncoder | None = None) -> dict[str, float]:
    """Held-out probe accuracy per attribute (one shape) and for colour-to-cell binding (two shapes)."""
    encoder = encoder or TextEncoder()
    single = build_shapes(n, max_objects=1, seed=11)
    pooled = encoder.encode(single.captions).numpy()
    train = np.array([s == "train" for s in single.splits])
    scores = {a: _probe_accuracy(pooled, single.labels[:, 0, k], train) for k, a in enumerate(ATTRIBUTES)}

    pairs = build_shapes(n, max_objects=2, seed=12)
    two = pairs.labels[:, 1, 0] >= 0
    labels = pairs.labels[two]
    pooled = encoder.encode([c for c, t in zip(pairs.captions, two) if t]).numpy()
    first = np.where(labels[:, 0, 3] < labels[:, 1, 3], 0, 1)
    target = labels[np.arange(len(labels)), first, 0]
    scores["binding"] = _probe_accuracy(pooled, target, np.arange(len(labels)) < int(0.8 * len(labels)))
    return scores


def mlp_binding(n: int = 12000, epochs: int = 300, encoder: TextEncoder | None = None) -> float:
    """Held-out binding accuracy of a 2-hidden-layer MLP on pooled vectors of two-shape captions."""
    import torch

    encoder = encoder or TextEncoder()
    pairs = build_shapes(n, max_objects=2, seed=12)
    two = pairs.labels[:, 1, 0] >= 0
    labels = pairs.labels[two]
    x = encoder.encode([c for c, t in zip(pairs.captions, two) if t]) * 10
    first = np.where(labels[:, 0, 3] < labels[:, 1, 3], 0, 1)
    y = torch.from_numpy(labels[np.arange(len(labels)), first, 0].astype(np.int64))
    n_train = int(0.8 * len(y))
    torch.manual_seed(0)
    mlp = torch.nn.Sequential(torch.nn.Linear(384, 512), torch.nn.LeakyReLU(0.2),
                              torch.nn.Linear(512, 512), torch.nn.LeakyReLU(0.2), torch.nn.Linear(512, 6))
    optimizer = torch.optim.Adam(mlp.parameters(), 1e-3)
    for _ in range(epochs):
        order = torch.randperm(n_train)
        for start in range(0, n_train, 256):
            batch = order[start : start + 256]
            loss = torch.nn.functional.cross_entropy(mlp(x[batch]), y[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    with torch.no_grad():
        return float((mlp(x[n_train:]).argmax(1) == y[n_train:]).float().mean())


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=4000)
    parser.add_argument("--mlp-n", type=int, default=12000)
    args = parser.parse_args()
    text_encoder = TextEncoder()
    for name, accuracy in probe(args.n, text_encoder).items():
        print(f"{name:12s} {accuracy:.3f}  (linear)")
    print(f"{'binding':12s} {mlp_binding(args.mlp_n, encoder=text_encoder):.3f}  (MLP 384-512-512-6)")
