"""Analytic attribute reader for shapes images: which colour, shape, size sits in which grid cell.

The shapes dataset draws each object inside its own cell of a 3x3 grid, so an image can be read cell
by cell with no learning at all:

* *ink* = how far a pixel is from white (0..1); a cell holding enough ink holds an object;
* *colour*: the palette colour nearest to the ink-weighted mean of the cell's strongly inked pixels;
* *shape* and *size*: the best soft-IoU match among the 8 (shape, size) templates, rendered exactly as
  the dataset renders them, at that cell.

``read_attributes`` returns the same (colour, shape, size, position) rows as ``labels.npy``;
``attribute_accuracy`` scores images against the labels of the captions they were made from.
"""

from __future__ import annotations

from functools import cache

import numpy as np

from ..data.shapes import ATTRIBUTES, COLOURS, POSITIONS, SHAPES, SIZES, cell_box, render_shapes

MIN_INK_PIXELS = 4.0  # summed ink below this: an empty cell (a small triangle holds ~12 at 32 px)
_PALETTE = np.array(list(COLOURS.values()), dtype=np.float32)


def ink(image: np.ndarray) -> np.ndarray:
    """(H, W) in [0, 1]: 0 on white, 1 on a fully saturated or dark pixel."""
    return np.clip((255.0 - image.astype(np.float32).min(axis=-1)) / 200.0, 0.0, 1.0)


def _cell_slices(position: int, size: int) -> tuple[slice, slice]:
    x0, y0, x1, y1 = cell_box(position, size)
    return slice(int(np.floor(y0)), int(np.ceil(y1))), slice(int(np.floor(x0)), int(np.ceil(x1)))


@cache
def _templates(position: int, size: int) -> list[tuple[int, int, np.ndarray]]:
    """(shape, size index, ink map of the cell) for every shape and size drawn at ``position``."""
    rows, cols = _cell_slices(position, size)
    out = []
    for shape in range(len(SHAPES)):
        for scale in range(len(SIZES)):
            objects = np.array([[0, shape, scale, position]], dtype=np.int16)
            out.append((shape, scale, ink(render_shapes(objects, size))[rows, cols]))
    return out


def read_attributes(image: np.ndarray) -> np.ndarray:
    """int16 (k, 4) rows of (colour, shape, size, position) for every cell that holds an object."""
    size = image.shape[0]
    amount = ink(image)
    found = []
    for position in range(len(POSITIONS)):
        rows, cols = _cell_slices(position, size)
        cell_ink, cell_rgb = amount[rows, cols], image[rows, cols].astype(np.float32)
        if cell_ink.sum() < MIN_INK_PIXELS:
            continue
        core = cell_ink > 0.6 * cell_ink.max()
        weights = cell_ink[core][:, None]
        mean_rgb = (cell_rgb[core] * weights).sum(0) / weights.sum()
        colour = int(np.argmin(((_PALETTE - mean_rgb) ** 2).sum(1)))
        scores = [np.minimum(cell_ink, t).sum() / np.maximum(cell_ink, t).sum() for _, _, t in _templates(position, size)]
        shape, scale, _ = _templates(position, size)[int(np.argmax(scores))]
        found.append((colour, shape, scale, position))
    return np.array(found, dtype=np.int16).reshape(-1, len(ATTRIBUTES))


def attribute_accuracy(images: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Per-attribute and overall accuracy of images against the objects their captions asked for.

    For each asked-for object: ``position`` is right when its cell holds an object; colour, shape and
    size are read in that cell (wrong when the cell is empty); ``object`` needs all four right, and
    ``image`` needs every object of the image right and no extra objects.
    """
    hits = {a: 0 for a in ATTRIBUTES} | {"object": 0, "image": 0}
    n_objects = 0
    for image, wanted in zip(images, labels):
        read = {int(row[3]): row for row in read_attributes(image)}
        all_right = True
        for target in wanted[wanted[:, 0] >= 0]:
            n_objects += 1
            got = read.get(int(target[3]))
            right = [got is not None and int(got[k]) == int(target[k]) for k in range(len(ATTRIBUTES))]
            for attribute, ok in zip(ATTRIBUTES, right):
                hits[attribute] += ok
            hits["object"] += all(right)
            all_right &= all(right)
        all_right &= len(read) == int((wanted[:, 0] >= 0).sum())
        hits["image"] += all_right
    return {k: v / (len(images) if k == "image" else max(n_objects, 1)) for k, v in hits.items()}
