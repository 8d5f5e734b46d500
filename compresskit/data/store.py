"""CaptionedImages: the in-memory and on-disk form of every dataset compresskit builds.

On disk a dataset is a folder written atomically (see ``cache.atomic_dir``):

    images.npy    uint8 (N, H, W, 3), RGB on white
    labels.npy    int16 (N, max_objects, n_attributes), -1 where absent   (shapes only)
    index.json    per image: caption, style, split, key (emoji code points / shapes seed index)
    info.json     what was built, from which sources and options; counts

Only ``np.save``/``np.load(allow_pickle=False)`` and JSON are used, so the bytes are the same for
the same options and loading runs no code from the file.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from ..cache import atomic_dir
from ..errors import DataError

SPLITS = ("train", "val", "eval")  # tune on val, report and gate on eval
IMAGE_SIZES = (16, 32, 64, 128)
IMAGES_FILE = "images.npy"
LABELS_FILE = "labels.npy"
INDEX_FILE = "index.json"
INFO_FILE = "info.json"


@dataclass(frozen=True)
class CaptionedImages:
    """Images with one caption each, an art style, a split, and (shapes) exact attribute labels."""

    name: str
    images: np.ndarray  # uint8 (N, H, W, 3)
    captions: list[str]
    styles: list[str]
    splits: list[str]  # "train" | "val" | "eval"
    keys: list[str]
    info: dict = field(default_factory=dict)
    labels: np.ndarray | None = None  # int16 (N, max_objects, n_attributes)
    path: Path | None = None

    def __len__(self) -> int:
        return len(self.captions)

    @property
    def size(self) -> int:
        return int(self.images.shape[1])

    def split(self, which: str) -> CaptionedImages:
        """The images of one split ("train", "val" or "eval")."""
        if which not in SPLITS:
            raise DataError(f"unknown split {which!r}; use one of {', '.join(SPLITS)}")
        keep = [i for i, s in enumerate(self.splits) if s == which]
        pick = lambda seq: [seq[i] for i in keep]  # noqa: E731
        return replace(
            self,
            images=self.images[keep],
            captions=pick(self.captions),
            styles=pick(self.styles),
            splits=pick(self.splits),
            keys=pick(self.keys),
            labels=None if self.labels is None else self.labels[keep],
        )

    def summary(self) -> dict:
        """Counts for humans and ``--json``: images, captions, styles, split sizes, size, cache path."""
        split_counts = Counter(self.splits)
        return {
            "dataset": self.name,
            "images": len(self),
            "captions": len(set(self.captions)),
            "styles": dict(sorted(Counter(self.styles).items())),
            "train": split_counts.get("train", 0),
            "val": split_counts.get("val", 0),
            "eval": split_counts.get("eval", 0),
            "size": self.size,
            "cache_path": str(self.path) if self.path else None,
            **{k: v for k, v in self.info.items() if k in ("options", "sources", "held_pairs", "built", "build_seconds")},
        }

    def save(self, folder: Path) -> None:
        """Write into ``folder`` (which the caller makes atomic)."""
        np.save(folder / IMAGES_FILE, np.ascontiguousarray(self.images, dtype=np.uint8))
        if self.labels is not None:
            np.save(folder / LABELS_FILE, np.ascontiguousarray(self.labels, dtype=np.int16))
        index = {"captions": self.captions, "styles": self.styles, "splits": self.splits, "keys": self.keys}
        _write_json(folder / INDEX_FILE, index)
        _write_json(folder / INFO_FILE, {"name": self.name, **self.info})

    @classmethod
    def load(cls, folder: Path) -> CaptionedImages:
        try:
            info = json.loads((folder / INFO_FILE).read_text("utf-8"))
            index = json.loads((folder / INDEX_FILE).read_text("utf-8"))
            images = np.load(folder / IMAGES_FILE, allow_pickle=False)
            labels_path = folder / LABELS_FILE
            labels = np.load(labels_path, allow_pickle=False) if labels_path.exists() else None
        except (OSError, ValueError, KeyError) as exc:
            raise DataError(f"dataset at {folder} is unreadable ({exc}); delete the folder to rebuild it") from None
        name = info.pop("name")
        if not all(len(index[k]) == len(images) for k in ("captions", "styles", "splits", "keys")) or (
                labels is not None and len(labels) != len(images)):
            raise DataError(f"dataset at {folder} is inconsistent; delete the folder to rebuild it")
        return cls(
            name=name,
            images=images,
            captions=index["captions"],
            styles=index["styles"],
            splits=index["splits"],
            keys=index["keys"],
            info=info,
            labels=labels,
            path=folder,
        )


def check_image_size(size: int) -> None:
    if size not in IMAGE_SIZES:
        raise DataError(f"unsupported --size {size}; use one of {', '.join(map(str, IMAGE_SIZES))}")


def load_cached(folder: Path) -> CaptionedImages | None:
    """A dataset found in the cache (``info["built"]`` is False); None, with a one-line note, when the cached
    copy is damaged (garbage, truncated, inconsistent): the caller builds it again and replaces it."""
    try:
        dataset = CaptionedImages.load(folder)
    except (DataError, TypeError, AttributeError, IndexError, KeyError, ValueError) as exc:
        why = str(exc) if isinstance(exc, DataError) else f"{type(exc).__name__}: {exc}"
        logging.getLogger("compresskit").warning(f"the cached dataset {folder.name} is damaged ({why.split(';')[0]}); "
                                                 "building it again")
        return None
    return replace(dataset, info={**dataset.info, "built": False, "build_seconds": 0.0})


def store_built(dataset: CaptionedImages, folder: Path, started: float) -> CaptionedImages:
    """Write a freshly built dataset to ``folder`` atomically (replacing any old copy) and reload it."""
    elapsed = round(time.perf_counter() - started, 2)
    with atomic_dir(folder, replace=True) as tmp:
        dataset.save(tmp)
    loaded = CaptionedImages.load(folder)
    return replace(loaded, info={**loaded.info, "built": True, "build_seconds": elapsed})


def _write_json(path: Path, obj: object) -> None:
    path.write_text(json.dumps(obj, ensure_ascii=False, indent=1, sort_keys=True) + "\n", encoding="utf-8")
