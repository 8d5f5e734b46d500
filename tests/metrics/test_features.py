"""Lite0 features: an image seen before reuses its row; a changed pixel is computed afresh."""

from __future__ import annotations

import numpy as np
import torch

from compresskit.metrics import features
from compresskit.metrics.features import extract_features


def test_seen_images_reuse_their_rows_and_changed_ones_are_recomputed(monkeypatch):
    monkeypatch.setattr(features, "_MEMO", {})
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (6, 32, 32, 3), dtype=np.uint8)
    first = extract_features(images)
    assert first.shape == (6, features.FEATURE_DIM) and len(features._MEMO) == 6
    calls = []
    real = features._compiled_lite0
    compiled = real(torch.get_num_threads())
    monkeypatch.setattr(features, "_compiled_lite0", lambda threads: (lambda batch: calls.append(len(batch)) or compiled(batch)))
    changed = images.copy()
    changed[2, 0, 0, 0] ^= 1  # one pixel of one image
    again = extract_features(np.concatenate([images[::-1], changed[2:3]]))
    assert calls == [1], "only the changed image is computed"
    assert torch.equal(again[:6], first.flip(0))
    assert not torch.equal(again[6], first[2])
    monkeypatch.setattr(features, "_MEMO", {})  # computed alone, from nothing seen: the same row
    monkeypatch.setattr(features, "_compiled_lite0", real)
    np.testing.assert_allclose(again[6].numpy(), extract_features(changed[2:3])[0].numpy(), rtol=1e-5, atol=1e-5)


def test_a_full_memo_is_cleared_without_losing_the_rows_of_the_call_that_filled_it(monkeypatch):
    monkeypatch.setattr(features, "_MEMO", {})
    monkeypatch.setattr(features, "MEMO_ROWS", 3)
    images = np.random.default_rng(1).integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    seen = extract_features(images[:3])
    both = extract_features(images)  # three rows from the memo, one new: the memo overflows and is cleared
    assert torch.equal(both[:3], seen) and len(features._MEMO) == 1
