"""The shapes dataset: procedural images of coloured shapes with captions and exact attribute labels.

Each image holds 1..``max_objects`` shapes on white, each in its own cell of a 3x3 grid, so shapes never
overlap and every attribute is exact:

    colour    red, orange, yellow, green, blue, purple
    shape     circle, square, triangle, diamond
    size      small (50% of a cell), large (90% of a cell)
    position  top left, top, top right, left, center, right, bottom left, bottom, bottom right

Caption: "a small red circle at the top left and a large blue square at the center" (objects in the
order they were drawn). ``labels[i, k] = (colour, shape, size, position)`` as indices into the tuples
below, -1 for absent objects. Image ``i`` depends only on ``(seed, i)``, so a larger ``n`` extends a
smaller one. Rendering is 4x supersampled and area-averaged down (no ringing). Every 10th image
(``i % 10 == 9``) is in the eval split.
"""

from __future__ import annotations

import time

import numpy as np
from PIL import Image, ImageDraw

from ..cache import cache_root, stable_hash
from ..errors import DataError
from .store import INFO_FILE, CaptionedImages, check_image_size, load_cached, store_built

BUILDER_VERSION = 1
COLOURS = {
    "red": (220, 38, 38),
    "orange": (245, 130, 20),
    "yellow": (235, 200, 20),
    "green": (30, 160, 60),
    "blue": (35, 80, 220),
    "purple": (130, 50, 170),
}
SHAPES = ("circle", "square", "triangle", "diamond")
SIZES = {"small": 0.5, "large": 0.9}
POSITIONS = ("top left", "top", "top right", "left", "center", "right", "bottom left", "bottom", "bottom right")
ATTRIBUTES = ("colour", "shape", "size", "position")
ATTRIBUTE_VALUES = {
    "colour": tuple(COLOURS),
    "shape": SHAPES,
    "size": tuple(SIZES),
    "position": POSITIONS,
}
SUPERSAMPLE = 4
MAX_N = 1_000_000


def cell_box(position: int, size: int) -> tuple[float, float, float, float]:
    """Pixel box (x0, y0, x1, y1) of a 3x3 grid cell in an image of side ``size``."""
    row, col = divmod(position, 3)
    cell = size / 3
    return col * cell, row * cell, (col + 1) * cell, (row + 1) * cell


def _draw_shape(draw: ImageDraw.ImageDraw, shape: str, cx: float, cy: float, half: float, fill) -> None:
    if shape == "circle":
        draw.ellipse((cx - half, cy - half, cx + half, cy + half), fill=fill)
    elif shape == "square":
        side = half * 0.85  # same visual area class as the circle
        draw.rectangle((cx - side, cy - side, cx + side, cy + side), fill=fill)
    elif shape == "triangle":
        draw.polygon([(cx, cy - half), (cx + half, cy + half * 0.8), (cx - half, cy + half * 0.8)], fill=fill)
    elif shape == "diamond":
        draw.polygon([(cx, cy - half), (cx + half, cy), (cx, cy + half), (cx - half, cy)], fill=fill)
    else:  # pragma: no cover - SHAPES is closed
        raise DataError(f"unknown shape {shape!r}")


def render_shapes(objects: np.ndarray, size: int) -> np.ndarray:
    """Render rows of (colour, shape, size, position) indices (-1 rows are skipped) to uint8 (size, size, 3)."""
    big = size * SUPERSAMPLE
    canvas = Image.new("RGB", (big, big), "white")
    draw = ImageDraw.Draw(canvas)
    for colour, shape, scale, position in objects:
        if colour < 0:
            continue
        x0, y0, x1, y1 = cell_box(int(position), big)
        half = (x1 - x0) * SIZES[ATTRIBUTE_VALUES["size"][scale]] / 2
        fill = COLOURS[ATTRIBUTE_VALUES["colour"][colour]]
        _draw_shape(draw, SHAPES[shape], (x0 + x1) / 2, (y0 + y1) / 2, half, fill)
    return np.asarray(canvas.resize((size, size), Image.Resampling.BOX), dtype=np.uint8)


def caption_for(objects: np.ndarray) -> str:
    phrases = []
    for colour, shape, scale, position in objects:
        if colour < 0:
            continue
        names = [ATTRIBUTE_VALUES[a][int(v)] for a, v in zip(ATTRIBUTES, (colour, shape, scale, position))]
        phrases.append(f"a {names[2]} {names[0]} {names[1]} at the {names[3]}")
    return " and ".join(phrases)


def sample_objects(seed: int, index: int, max_objects: int) -> np.ndarray:
    """The objects of image ``index``: int16 (max_objects, 4), distinct cells, -1 rows for absent ones."""
    rng = np.random.default_rng([seed, index])
    count = int(rng.integers(1, max_objects + 1))
    objects = np.full((max_objects, len(ATTRIBUTES)), -1, dtype=np.int16)
    cells = rng.choice(len(POSITIONS), size=count, replace=False)
    for k in range(count):
        objects[k] = (
            rng.integers(len(COLOURS)),
            rng.integers(len(SHAPES)),
            rng.integers(len(SIZES)),
            cells[k],
        )
    return objects


def build_shapes(
    n: int = 10_000,
    size: int = 32,
    *,
    seed: int = 0,
    max_objects: int = 2,
    rebuild: bool = False,
) -> CaptionedImages:
    """Build (or load from the cache) ``n`` shapes images of side ``size``."""
    if not 1 <= n <= MAX_N:
        raise DataError(f"--n must be between 1 and {MAX_N:,}, got {n}")
    check_image_size(size)
    if not 1 <= max_objects <= len(POSITIONS):
        raise DataError(f"max_objects must be between 1 and {len(POSITIONS)}, got {max_objects}")
    options = {"n": n, "size": size, "seed": seed, "max_objects": max_objects}
    key = stable_hash({"builder": BUILDER_VERSION, "options": options})
    folder = cache_root() / "datasets" / f"shapes{size}-n{n}-s{seed}-{key}"
    if (folder / INFO_FILE).exists() and not rebuild:
        return load_cached(folder)

    start = time.perf_counter()
    labels = np.stack([sample_objects(seed, i, max_objects) for i in range(n)])
    dataset = CaptionedImages(
        name="shapes",
        images=np.stack([render_shapes(objects, size) for objects in labels]),
        captions=[caption_for(objects) for objects in labels],
        styles=["shapes"] * n,
        splits=["eval" if i % 10 == 9 else "train" for i in range(n)],
        keys=[f"{seed}:{i}" for i in range(n)],
        info={"options": options, "attributes": {a: list(v) for a, v in ATTRIBUTE_VALUES.items()}},
        labels=labels,
    )
    return store_built(dataset, folder, start)
