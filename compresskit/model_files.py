"""The files of model folders: where the shipped zoo lives and the sha256 checksums each folder carries.

    FOLDER/checksums.sha256      "<sha256>  <file>" per line: the format of `sha256sum`, so
                                 `cd FOLDER && sha256sum -c checksums.sha256` checks it without compresskit

Shipped zoo models (generators and the alignment encoder) and the folders ``compresskit train`` / ``card`` /
``align`` write get one (``write_checksums``, the last file written). ``verify_checksums`` checks it: a file
that does not match, or a listed file that is missing, is a ModelError naming the file (exit 2); a folder
with no checksums file (a user's own export) is accepted with a one-line note on the ``compresskit`` logger.
This module sits below every layer that reads a model folder (metrics loads the aligner, models the
generators); ``models.checksums.verify_model_folder`` adds a run's artifact folder, checked by its manifest.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

from .errors import ModelError

ZOO_DIR = Path(__file__).resolve().parent / "zoo"  # shipped model folders (package data)
CHECKSUMS_FILE = "checksums.sha256"
_verified: dict[tuple, bool] = {}  # (file, size, mtime) of every file of a folder already checked in this process
log = logging.getLogger("compresskit")


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def write_checksums(folder: Path) -> Path:
    """Write ``checksums.sha256`` for every other file in ``folder`` (call last, on the temporary folder)."""
    folder = Path(folder)
    names = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file() and p.name != CHECKSUMS_FILE)
    path = folder / CHECKSUMS_FILE
    path.write_text("".join(f"{sha256_file(folder / name)}  {name}\n" for name in names), encoding="utf-8")
    return path


def _listed(folder: Path) -> dict[str, str]:
    try:
        lines = (folder / CHECKSUMS_FILE).read_text("utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ModelError(f"{folder / CHECKSUMS_FILE} is unreadable ({exc}); restore the model folder") from None
    listed = {}
    for number, line in enumerate(lines, 1):
        digest, _, name = line.partition("  ")
        if len(digest) != 64 or not name or "/.." in f"/{name}" or name.startswith("/"):
            raise ModelError(f"{folder / CHECKSUMS_FILE} line {number} is not '<sha256>  <file>'; restore the model folder")
        listed[name] = digest.lower()
    return listed


def _state(folder: Path, names) -> tuple:
    stats = []
    for name in sorted(names):
        try:
            st = (folder / name).stat()
        except OSError:
            return ()
        stats.append((name, st.st_size, st.st_mtime_ns))
    return (str(folder.resolve()), *stats)


def verify_checksums(folder: Path) -> bool:
    """Check every file listed in ``checksums.sha256``; True if verified, False (with a note) if there is none."""
    folder = Path(folder)
    if not (folder / CHECKSUMS_FILE).is_file():
        log.warning("%s has no %s: its files are not verified (a folder written by compresskit has one)",
                    folder, CHECKSUMS_FILE)
        return False
    listed = _listed(folder)
    key = _state(folder, listed)
    if key and _verified.get(key):
        return True
    for name, expected in listed.items():
        path = folder / name
        if not path.is_file():
            raise ModelError(f"{path} is missing but listed in {CHECKSUMS_FILE}; restore the model folder "
                             f"(a shipped model: reinstall compresskit)")
        if sha256_file(path) != expected:
            raise ModelError(f"{path} does not match its checksum in {CHECKSUMS_FILE} (corrupt or tampered); "
                             f"restore the model folder (a shipped model: reinstall compresskit)")
    _verified[key] = True
    return True
