"""Labelled image grids (PNG): dataset previews, generated samples, report grids."""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .cache import atomic_file


def to_images(tensor) -> np.ndarray:
    """Generator output, float NCHW in [-1, 1] (a torch tensor) -> uint8 NHWC."""
    return ((tensor.detach().float().clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).cpu().numpy()


def labelled_grid(
    images: np.ndarray,
    labels: Sequence[str],
    *,
    columns: int = 8,
    tile_px: int = 96,
    label_lines: int = 2,
) -> Image.Image:
    """Images (uint8 N,H,W,3) in a grid, each upscaled (nearest, so pixels stay honest) and captioned."""
    if len(images) != len(labels):
        raise ValueError(f"{len(images)} images but {len(labels)} labels")
    font = _label_font(11)
    line_px = 13
    chars = max(8, tile_px // 6)
    cell_w, cell_h = tile_px + 8, tile_px + 6 + label_lines * line_px
    rows = max(1, -(-len(images) // columns))
    sheet = Image.new("RGB", (columns * cell_w, rows * cell_h), "white")
    draw = ImageDraw.Draw(sheet)
    for i, (pixels, label) in enumerate(zip(images, labels)):
        x, y = (i % columns) * cell_w + 4, (i // columns) * cell_h + 4
        tile = Image.fromarray(np.asarray(pixels, dtype=np.uint8)).resize((tile_px, tile_px), Image.Resampling.NEAREST)
        sheet.paste(tile, (x, y))
        lines = textwrap.wrap(label, chars)[:label_lines]
        for j, line in enumerate(lines):
            draw.text((x, y + tile_px + 2 + j * line_px), line, fill="black", font=font)
    return sheet


def _label_font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """DejaVu Sans from matplotlib's bundled fonts (covers accents like 'piñata'), else Pillow's default."""
    import matplotlib

    dejavu = Path(matplotlib.__file__).parent / "mpl-data" / "fonts" / "ttf" / "DejaVuSans.ttf"
    if dejavu.is_file():
        return ImageFont.truetype(str(dejavu), size)
    return ImageFont.load_default(size=size)


def save_grid(path: Path, images: np.ndarray, labels: Sequence[str], **kwargs) -> Path:
    """Write a labelled grid PNG (parent folders are created)."""
    sheet = labelled_grid(images, labels, **kwargs)
    with atomic_file(Path(path)) as tmp:
        sheet.save(tmp, format="PNG")
    return Path(path)
