"""One content-addressed store of finished artifacts, shared by many run folders (a recipe search's trials).

    STORE/<pass>-<id>/           a finished step's artifact, exactly as a run folder holds it (relocatable)
    STORE/.locks/<pass>-<id>.lock    held while a process checks, builds or publishes that id

The runner asks the store for a step its run folder lacks: an intact entry is copied into the run folder
(atomically: a temporary sibling renamed into place), so the run folder stays self-contained; otherwise the step
is computed into the run folder as usual and then published here (copied to a temporary sibling, renamed). The
per-id lock makes two processes that need the same step compute it once: the second waits, then copies.
An entry that fails its checksums is deleted and rebuilt, said in one log line. Artifacts hold no absolute
paths (the manifest lists files relative to its folder), so a copy reads the same anywhere.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from ..artifact import Artifact, load_artifact
from ..cache import atomic_dir
from ..errors import ArtifactError, CacheError
from ..lock import exclusive

STORE_ENV = "COMPRESSKIT_STORE"
LOCKS = ".locks"


def _quiet(message: str) -> None:
    """The default log: nothing."""


class ArtifactStore:
    """A folder of finished artifacts keyed ``<pass>-<id>``; ``log`` gets the store's one-line notes."""

    def __init__(self, root: Path, log: Callable[[str], None] = _quiet):
        self.root = Path(root)
        self.log = log
        try:
            (self.root / LOCKS).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise CacheError(f"cannot create the artifact store {self.root}: {exc.strerror}; give a writable "
                             f"folder (--store or ${STORE_ENV})") from None

    @classmethod
    def opened(cls, root: str | Path | None, log: Callable[[str], None] = _quiet) -> ArtifactStore | None:
        """The store at ``root``, else at ``$COMPRESSKIT_STORE``, else None (no store)."""
        root = root if root is not None else os.environ.get(STORE_ENV) or None
        return cls(Path(root), log) if root is not None else None

    @contextmanager
    def claim(self, key: str) -> Iterator[None]:
        """Hold ``key``'s lock (waiting for another process that checks or builds it; said once in the log)."""
        with exclusive(self.root / LOCKS / f"{key}.lock",
                       on_wait=lambda: self.log(f"waiting for another process building {key} (store {self.root})")):
            for stale in self.root.glob(f".{key}.*.tmp"):  # a dead publisher's half copy (we hold its id's lock)
                shutil.rmtree(stale, ignore_errors=True)
            yield

    def has(self, key: str) -> bool:
        return (self.root / key).is_dir()

    def fetch(self, key: str, folder: Path) -> Artifact | None:
        """Copy the intact entry ``key`` into ``folder`` (atomically) and return it there; None if the store has none.

        The entry is checked against its manifest first; one that fails is deleted (one log line) and None returned.
        Call under ``claim(key)``.
        """
        entry = self.root / key
        if not entry.is_dir():
            return None
        try:
            load_artifact(entry)  # every file against the manifest
        except ArtifactError as exc:
            self.log(f"store: rebuilding {key}: {exc}")
            shutil.rmtree(entry, ignore_errors=True)
            return None
        try:
            with atomic_dir(folder, replace=True) as tmp:
                shutil.copytree(entry, tmp, dirs_exist_ok=True)
        except OSError as exc:  # an unreadable entry (or a full disk): build the step here instead
            self.log(f"store: could not copy {key} from {self.root} ({exc}); building it")
            return None
        return load_artifact(folder, verify=False)  # the files just checked, copied

    def publish(self, folder: Path, key: str) -> None:
        """Copy the finished artifact ``folder`` into the store as ``key`` (a temporary sibling renamed into place).

        An entry that is already there is kept (another process published the same id first); a store that cannot
        be written is said in the log and skipped: the run folder holds the artifact either way.
        """
        entry = self.root / key
        if entry.is_dir():
            return
        try:
            with atomic_dir(entry) as tmp:
                shutil.copytree(folder, tmp, dirs_exist_ok=True)
        except OSError as exc:
            if not entry.is_dir():  # not a lost race: the store could not take it
                self.log(f"store: could not publish {key} to {self.root}: {exc}")
        except CacheError as exc:
            self.log(f"store: could not publish {key}: {exc}")
