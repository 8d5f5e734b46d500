"""On-disk embedding cache: one SQLite file, rows keyed by (model id, kind, text).

SQLite gives atomic, crash-safe writes and safe concurrent readers for free; values are raw float
bytes plus their shape, never pickles. A cache is only ever a copy: a file that is not a database (garbage,
truncated) is moved aside and rebuilt with a one-line note, and a row whose bytes do not fit its dtype and
shape is computed again (and replaced), never returned.
"""

from __future__ import annotations

import logging
import os
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from ..errors import CacheError

_SCHEMA = """
CREATE TABLE IF NOT EXISTS embeddings (
    model TEXT NOT NULL, kind TEXT NOT NULL, text TEXT NOT NULL,
    dtype TEXT NOT NULL, shape TEXT NOT NULL, data BLOB NOT NULL,
    PRIMARY KEY (model, kind, text)
)
"""


class EmbeddingCache:
    """Get and put arrays for texts. ``kind`` separates pooled vectors from token features."""

    def __init__(self, path: Path):
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            try:
                self._create()
            except sqlite3.DatabaseError as exc:
                if isinstance(exc, sqlite3.OperationalError):  # locked, read-only, cannot open: not garbage
                    raise
                self._rebuild(exc)
        except (OSError, sqlite3.Error) as exc:
            raise CacheError(
                f"cannot use embedding cache {self.path}: {exc}; set COMPRESSKIT_CACHE to a writable folder"
            ) from None

    def _create(self) -> None:
        with self._connect() as db:
            db.execute(_SCHEMA)
            db.execute("SELECT COUNT(*) FROM embeddings").fetchone()  # reads a page: garbage fails here

    def _rebuild(self, why: Exception) -> None:
        """Move a file that is not a database aside and start an empty one, one writer at a time (another
        process may have rebuilt it already: then its fresh database is used, not moved)."""
        import fcntl

        with open(self.path.with_name(self.path.name + ".lock"), "w") as guard:
            fcntl.flock(guard, fcntl.LOCK_EX)
            try:
                self._create()
                return  # rebuilt by another process meanwhile
            except sqlite3.DatabaseError:
                pass
            aside = self.path.with_name(f"{self.path.name}.corrupt-{os.getpid()}")
            os.replace(self.path, aside)
            logging.getLogger("compresskit").warning(
                f"embedding cache {self.path} was not a readable database ({why}); moved to {aside.name} and "
                f"rebuilt: captions are encoded again")
            self._create()

    damaged = 0  # rows found damaged (and so computed again) by this instance

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        """A connection whose block is one transaction (committed on success), always closed."""
        db = sqlite3.connect(self.path, timeout=30)
        try:
            with db:
                yield db
        finally:
            db.close()

    def get(self, model: str, kind: str, texts: Sequence[str]) -> dict[str, np.ndarray]:
        """The cached arrays among ``texts`` (missing ones are simply absent)."""
        found: dict[str, np.ndarray] = {}
        unique = list(dict.fromkeys(texts))
        with self._connect() as db:
            for start in range(0, len(unique), 500):  # stay under SQLite's parameter limit
                chunk = unique[start : start + 500]
                marks = ",".join("?" * len(chunk))
                rows = db.execute(
                    f"SELECT text, dtype, shape, data FROM embeddings WHERE model=? AND kind=? AND text IN ({marks})",
                    [model, kind, *chunk],
                )
                for text, dtype, shape, data in rows:
                    try:
                        dims = tuple(int(d) for d in shape.split("x")) if shape else ()
                        found[text] = np.frombuffer(data, dtype=dtype).reshape(dims)
                    except (ValueError, TypeError):  # a damaged row: computed again and replaced by put
                        self.damaged += 1
        return found

    def put(self, model: str, kind: str, items: dict[str, np.ndarray]) -> None:
        rows = [
            (model, kind, text, arr.dtype.str, "x".join(map(str, arr.shape)), np.ascontiguousarray(arr).tobytes())
            for text, arr in items.items()
        ]
        try:
            with self._connect() as db:
                db.executemany("INSERT OR REPLACE INTO embeddings VALUES (?, ?, ?, ?, ?, ?)", rows)
        except sqlite3.Error as exc:
            raise CacheError(f"cannot write embedding cache {self.path}: {exc}; set COMPRESSKIT_CACHE to a writable folder") from None

    def count(self, model: str | None = None) -> int:
        with self._connect() as db:
            if model is None:
                return db.execute("SELECT COUNT(*) FROM embeddings").fetchone()[0]
            return db.execute("SELECT COUNT(*) FROM embeddings WHERE model=?", (model,)).fetchone()[0]
