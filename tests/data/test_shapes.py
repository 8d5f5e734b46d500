from __future__ import annotations

import numpy as np
import pytest

from compresskit.data import build_shapes
from compresskit.data.shapes import ATTRIBUTE_VALUES, COLOURS, POSITIONS, caption_for, cell_box, render_shapes
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
    assert small.splits[9] == "eval" and small.splits[8] == "train"
    assert small.summary()["eval"] == 3


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"n": 0}, "--n must be between"),
    ({"n": 10, "size": 30}, "unsupported --size 30"),
    ({"n": 10, "max_objects": 12}, "max_objects must be between"),
])
def test_bad_options(kwargs, message):
    with pytest.raises(DataError, match=message):
        build_shapes(**kwargs)
