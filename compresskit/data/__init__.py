"""Captioned image datasets, built offline from installed packages and cached.

    load_dataset("emoji", size=32)         real emoji art in 2-4 styles, CLDR captions
    load_dataset("shapes", n=1000)          procedural shapes with exact attribute labels
"""

from __future__ import annotations

from ..errors import DataError
from ..lookup import lookup
from .emoji import build_emoji
from .shapes import build_shapes
from .store import CaptionedImages

DATASETS = {"emoji": build_emoji, "shapes": build_shapes}


def load_dataset(name: str, **options) -> CaptionedImages:
    """Build or load a dataset by name; options are those of ``build_emoji`` / ``build_shapes``."""
    return lookup(DATASETS, name, "dataset", error=DataError)(**options)


__all__ = ["DATASETS", "CaptionedImages", "build_emoji", "build_shapes", "load_dataset"]
