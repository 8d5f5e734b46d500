"""Captioned image datasets, built offline from installed packages and cached.

    load_dataset("emoji", size=32)         real emoji art in 2-4 styles, CLDR captions
    load_dataset("shapes", n=1000)          procedural shapes with exact attribute labels
"""

from __future__ import annotations

import difflib

from ..errors import DataError
from .emoji import build_emoji
from .shapes import build_shapes
from .store import CaptionedImages

DATASETS = {"emoji": build_emoji, "shapes": build_shapes}


def did_you_mean(name: str, choices) -> str:
    """' (did you mean 'x'?)' for the closest choice, or ''."""
    close = difflib.get_close_matches(name, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def load_dataset(name: str, **options) -> CaptionedImages:
    """Build or load a dataset by name; options are those of ``build_emoji`` / ``build_shapes``."""
    if name not in DATASETS:
        raise DataError(f"unknown dataset {name!r}{did_you_mean(name, DATASETS)}; choose one of {', '.join(DATASETS)}")
    return DATASETS[name](**options)


__all__ = ["DATASETS", "CaptionedImages", "build_emoji", "build_shapes", "load_dataset"]
