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
smaller one. Rendering is 4x supersampled and area-averaged down (no ringing).

Splits hold out *combinations*, so a held-out image never has a label-identical twin in train (an image
depends only on its labels) and controllability means composing known words in new ways:

* **unseen pairings**: ``HELD_PAIRS`` fixed, seeded (colour, shape) pairings, two for eval and two for
  val, never drawn in train. Every colour and every shape still appears in train with other partners.
  An image holding one of them is in that split (eval wins when it holds both kinds).
* **seen pairings, unseen images**: of the rest, ``SEEN_FRACTION`` of the *compositions* go to eval and
  as many to val, by hash: for one object the whole (colour, shape, size, position) tuple, for two objects
  the unordered pair of (colour, shape) pairings (so "a red circle ... and a blue square ..." is never
  seen together in train, in any cells or sizes).

``combination_group(labels)`` says which of the two an image is ("unseen" / "seen").
"""

from __future__ import annotations

import hashlib
import time

import numpy as np
from PIL import Image, ImageDraw

from ..cache import cache_root, stable_hash
from ..errors import DataError
from .store import INFO_FILE, CaptionedImages, check_image_size, load_cached, store_built

BUILDER_VERSION = 2  # 2: combination splits with val (1: i % 10 == 9)
COLOURS = {
    "red": (220, 38, 38),
    "orange": (245, 130, 20),
    "yellow": (235, 200, 20),
    "green": (30, 160, 60),
    "blue": (35, 80, 220),
    "purple": (130, 50, 170),
}
SHAPES = ("circle", "square", "triangle", "diamond")
COLOURS_LIST = tuple(COLOURS)
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
SEEN_FRACTION = 0.05  # of the seen-pairing compositions, per held-out split
SPLIT_SEED = 20261129


def _held_pairs() -> dict[tuple[int, int], str]:
    """Four (colour, shape) pairings held out of train: two -> eval, two -> val. Four distinct colours and
    four distinct shapes, so each colour keeps 3 of its 4 shapes in train and each shape 5 of its 6 colours."""
    rng = np.random.default_rng(SPLIT_SEED)
    colours = rng.permutation(len(COLOURS))[:4]
    shapes = rng.permutation(len(SHAPES))
    return {(int(c), int(s)): split for c, s, split in zip(colours, shapes, ("eval", "eval", "val", "val"))}


HELD_PAIRS = _held_pairs()


def _unit_hash(key: str) -> float:
    return int.from_bytes(hashlib.sha256(f"{SPLIT_SEED}:{key}".encode()).digest()[:8], "big") / 2**64


def composition_key(objects: np.ndarray) -> str:
    """What must not repeat across splits: one object's full tuple, or two objects' (colour, shape) pairings."""
    present = objects[objects[:, 0] >= 0]
    if len(present) == 1:
        return "1:" + ",".join(str(int(v)) for v in present[0])
    return f"{len(present)}:" + "|".join(sorted(f"{int(o[0])},{int(o[1])}" for o in present))


def split_of(objects: np.ndarray) -> str:
    """train / val / eval of an image from its labels alone (see the module docstring)."""
    held = {HELD_PAIRS.get((int(o[0]), int(o[1]))) for o in objects if o[0] >= 0}
    if "eval" in held:
        return "eval"
    if "val" in held:
        return "val"
    u = _unit_hash(composition_key(objects))
    return "eval" if u < SEEN_FRACTION else "val" if u < 2 * SEEN_FRACTION else "train"


def combination_group(objects: np.ndarray) -> str:
    """"unseen" when an object's (colour, shape) pairing is never drawn in train, else "seen"."""
    return "unseen" if any((int(o[0]), int(o[1])) in HELD_PAIRS for o in objects if o[0] >= 0) else "seen"


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
        cached = load_cached(folder)
        if cached is not None:
            return cached

    start = time.perf_counter()
    labels = np.stack([sample_objects(seed, i, max_objects) for i in range(n)])
    dataset = CaptionedImages(
        name="shapes",
        images=np.stack([render_shapes(objects, size) for objects in labels]),
        captions=[caption_for(objects) for objects in labels],
        styles=["shapes"] * n,
        splits=[split_of(objects) for objects in labels],
        keys=[f"{seed}:{i}" for i in range(n)],
        info={"options": options, "attributes": {a: list(v) for a, v in ATTRIBUTE_VALUES.items()},
              "held_pairs": {split: [f"{COLOURS_LIST[c]} {SHAPES[s]}" for (c, s), sp in HELD_PAIRS.items()
                                     if sp == split] for split in ("eval", "val")}},
        labels=labels,
    )
    return store_built(dataset, folder, start)
