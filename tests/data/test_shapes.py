from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from compresskit.data import build_shapes
from compresskit.data.shapes import (
    ATTRIBUTE_VALUES,
    COLOURS,
    HELD_PAIRS,
    POSITIONS,
    caption_for,
    cell_box,
    combination_group,
    composition_key,
    render_shapes,
    sample_objects,
    split_of,
)
from compresskit.errors import DataError


def _object(colour, shape, size, position):
    values = [ATTRIBUTE_VALUES[a].index(v) for a, v in
              zip(("colour", "shape", "size", "position"), (colour, shape, size, position))]
    return np.array([values, [-1, -1, -1, -1]], dtype=np.int16)


def _coloured(pixels: np.ndarray) -> np.ndarray:
    return pixels.min(axis=-1) < 200  # anything not (near) white


@pytest.mark.parametrize("position", ["top left", "center", "bottom right", "right"])
def test_pixels_agree_with_position_and_colour(position):
    objects = _object("blue", "square", "large", position)
    pixels = render_shapes(objects, 32)
    x0, y0, x1, y1 = cell_box(POSITIONS.index(position), 32)
    rows, cols = np.nonzero(_coloured(pixels))
    assert rows.min() >= int(y0) and rows.max() < int(np.ceil(y1)), "paint stays inside its cell"
    assert cols.min() >= int(x0) and cols.max() < int(np.ceil(x1))
    centre = pixels[int((y0 + y1) / 2), int((x0 + x1) / 2)]
    assert np.abs(centre.astype(int) - COLOURS["blue"]).max() <= 2


def test_large_covers_more_than_small_and_shapes_differ():
    area = lambda *o: int(_coloured(render_shapes(_object(*o), 32)).sum())  # noqa: E731
    assert area("red", "circle", "large", "center") > 2.5 * area("red", "circle", "small", "center")
    masks = {s: _coloured(render_shapes(_object("red", s, "large", "center"), 64))
             for s in ATTRIBUTE_VALUES["shape"]}
    names = list(masks)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            assert (masks[a] ^ masks[b]).sum() > 20, f"{a} and {b} must look different"


def test_caption_states_every_attribute():
    objects = _object("green", "triangle", "small", "bottom left")
    objects[1] = [ATTRIBUTE_VALUES["colour"].index("purple"), 1, 1, 4]
    assert caption_for(objects) == "a small green triangle at the bottom left and a large purple square at the center"


def test_dataset_labels_match_pixels_and_captions(fresh_cache):
    ds = build_shapes(60, size=32, seed=3)
    assert ds.labels.shape == (60, 2, 4)
    for i in range(60):
        assert np.array_equal(ds.images[i], render_shapes(ds.labels[i], 32))
        assert ds.captions[i] == caption_for(ds.labels[i])
        present = ds.labels[i][ds.labels[i, :, 0] >= 0]
        assert len(set(present[:, 3].tolist())) == len(present), "one shape per cell"
        for colour, _, _, position in present:
            x0, y0, x1, y1 = cell_box(int(position), 32)
            rgb = ds.images[i, int((y0 + y1) / 2), int((x0 + x1) / 2)]
            expected = COLOURS[ATTRIBUTE_VALUES["colour"][colour]]
            assert np.abs(rgb.astype(int) - expected).max() <= 2


def test_deterministic_by_seed_and_prefix_stable(fresh_cache):
    small, big = build_shapes(30, seed=7), build_shapes(50, seed=7)
    assert np.array_equal(small.images, big.images[:30]) and small.captions == big.captions[:30]
    assert not np.array_equal(build_shapes(30, seed=8).images, small.images)
    assert small.splits == [split_of(objects) for objects in small.labels] == big.splits[:30]
    assert small.summary()["train"] + small.summary()["val"] + small.summary()["eval"] == 30


def _objects(labels: np.ndarray) -> frozenset:
    return frozenset(tuple(int(v) for v in o) for o in labels if o[0] >= 0)


def test_no_held_out_image_has_a_label_identical_train_image_and_held_pairings_never_train():
    """The leak of the old index split (every one-object eval image had a pixel-identical train twin) is gone:
    on the default 10,000 images, no val/eval image shares its labels (hence its pixels) with a train image,
    the held (colour, shape) pairings never appear in train, and no two-object pairing of held-out images
    is drawn together in train."""
    labels = [sample_objects(0, i, 2) for i in range(10_000)]
    splits = [split_of(objects) for objects in labels]
    train = [objects for objects, split in zip(labels, splits) if split == "train"]
    train_sets = {_objects(o) for o in train}
    train_pairings = {(int(o[0]), int(o[1])) for objects in train for o in objects if o[0] >= 0}
    train_two = {composition_key(o) for o in train if (o[:, 0] >= 0).sum() == 2}
    counts = Counter((s, combination_group(o), int((o[:, 0] >= 0).sum())) for o, s in zip(labels, splits))
    for objects, split in zip(labels, splits):
        if split == "train":
            continue
        assert _objects(objects) not in train_sets, (split, objects)
        if (objects[:, 0] >= 0).sum() == 2:
            assert composition_key(objects) not in train_two
    assert not train_pairings & set(HELD_PAIRS), "a held-out pairing is drawn in train"
    assert {c for c, _ in train_pairings} == set(range(len(COLOURS))) and {s for _, s in train_pairings} == set(range(4))
    # held-out sets large enough to score: unseen one- and two-object images in both eval and val, seen ones too
    for split in ("eval", "val"):
        for group in ("seen", "unseen"):
            for k in (1, 2):
                assert counts[(split, group, k)] >= 100, counts
    assert 0.6 < sum(s == "train" for s in splits) / len(splits) < 0.75
    # eval and val are disjoint in what they hold out
    eval_keys = {composition_key(o) for o, s in zip(labels, splits) if s == "eval"}
    assert not eval_keys & {composition_key(o) for o, s in zip(labels, splits) if s == "val"}


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"n": 0}, "--n must be between"),
    ({"n": 10, "size": 30}, "unsupported --size 30"),
    ({"n": 10, "max_objects": 12}, "max_objects must be between"),
])
def test_bad_options(kwargs, message):
    with pytest.raises(DataError, match=message):
        build_shapes(**kwargs)
