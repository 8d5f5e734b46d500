"""How much of a shapes caption's attributes does the MiniLM sentence vector keep?

A linear probe (logistic regression) on the pooled, unit-norm sentence vectors predicts each attribute
of one-shape captions, and, for two-shape captions, which colour sits in the lower-numbered cell (a
binding question). Run: ``python benchmarks/text_probe.py [--n 4000]``. README quotes its output.
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


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=4000)
    for name, accuracy in probe(parser.parse_args().n).items():
        print(f"{name:10s} {accuracy:.3f}")
