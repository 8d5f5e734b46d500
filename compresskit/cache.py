"""Where compresskit keeps what it builds once (datasets, embeddings), and how it writes there safely.

The root is ``$COMPRESSKIT_CACHE`` if set, else the user's cache dir (``~/.cache/compresskit`` on Linux).
Every entry is written into a temporary sibling and renamed into place, so a crash never leaves a
half-written entry where a reader would find it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from platformdirs import user_cache_dir

from .errors import CacheError

CACHE_ENV = "COMPRESSKIT_CACHE"


def cache_root() -> Path:
    """The cache root folder (created if missing)."""
    root = Path(os.environ.get(CACHE_ENV) or user_cache_dir("compresskit", appauthor=False))
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CacheError(
            f"cannot create cache folder {root}: {exc.strerror}; set {CACHE_ENV} to a writable folder"
        ) from None
    if not os.access(root, os.W_OK | os.X_OK):
        raise CacheError(f"cache folder {root} is not writable; set {CACHE_ENV} to a writable folder")
    return root


def stable_hash(obj: object, length: int = 16) -> str:
    """Hex digest of a JSON-serialisable object, independent of dict order."""
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:length]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _normal_permissions(path: Path) -> None:
    """mkdtemp/mkstemp create 0700/0600 entries; give the finished ones the usual umask-based modes."""
    mask = _umask()
    if path.is_dir():
        for child in [path, *path.rglob("*")]:
            child.chmod((0o777 if child.is_dir() else 0o666) & ~mask)
    else:
        path.chmod(0o666 & ~mask)


@contextmanager
def atomic_dir(final: Path, *, replace: bool = False) -> Iterator[Path]:
    """Yield a temporary folder next to ``final``; rename it to ``final`` only if the block succeeds.

    If ``final`` already exists it is kept (a concurrent builder finished first) unless ``replace``.
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent))
    except OSError as exc:
        raise CacheError(
            f"cannot write to {final.parent}: {exc.strerror}; set {CACHE_ENV} to a writable folder"
        ) from None
    try:
        yield tmp
        _normal_permissions(tmp)
        if final.exists() and replace:
            shutil.rmtree(final)
        if final.exists():
            shutil.rmtree(tmp)
        else:
            os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


@contextmanager
def atomic_file(final: Path) -> Iterator[Path]:
    """Yield a temporary path next to ``final`` (same suffix); rename it into place if the block succeeds."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{final.stem}.", suffix=final.suffix, dir=final.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        _normal_permissions(tmp)
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
