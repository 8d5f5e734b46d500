"""A full disk, said in one line: what could not be written, where, what was free and what it had written.

A run that fills its disk (``ENOSPC``, or a quota's ``EDQUOT``) in any step, the bench or the report stops with
``DiskFull``: the half-written artifact or file is removed (everything is written in a temporary sibling and
renamed into place, ``cache.atomic_dir``), finished steps stay, and the same command resumes once space is
freed. Libraries say it their own way (safetensors in its message; OpenVINO's C++ streams as "iostream error",
after removing their partial file), so the whole chain of causes is read, and an error raised while the disk has
under 1 MiB free counts as a full disk.
"""

from __future__ import annotations

import errno
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import CompresskitError, DiskFull, PassFailed

ERRNOS = {errno.ENOSPC, errno.EDQUOT}
NEARLY_FULL = 1 << 20  # a write that failed while its disk had less free than this is taken as a full disk
_SAID = ("no space left on device", "disk quota exceeded", "storagefull", "not enough space on the disk")


def _chain(exc: BaseException | None) -> Iterator[BaseException]:
    """``exc`` and its causes (explicit or implicit), each once."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def is_disk_full(exc: BaseException | None) -> bool:
    """True when ``exc`` or one of its causes is a full disk or quota, whichever library raised it."""
    return any(isinstance(e, DiskFull) or (isinstance(e, OSError) and e.errno in ERRNOS)
               or any(phrase in str(e).lower() for phrase in _SAID) for e in _chain(exc))


def _failed_stream(exc: BaseException | None) -> bool:
    """OpenVINO's C++ writers report a full disk as a failed stream ("basic_ios::clear: iostream error") and remove
    their partial file, so the disk no longer looks full afterwards; a stream that fails while writing is the
    disk (full, a quota, an I/O error), never a pass's logic."""
    return any("iostream error" in str(e) for e in _chain(exc))


def free_bytes(path: Path) -> int | None:
    """Free bytes on the disk that holds ``path`` (its nearest existing parent); None if it cannot be read."""
    path = Path(path).absolute()
    for candidate in (path, *path.parents):
        if candidate.exists():
            try:
                return shutil.disk_usage(candidate).free
            except OSError:
                return None
    return None


def written_bytes(*paths: Path | None) -> int:
    """Bytes of the files under ``paths`` (folders or files; missing ones count 0)."""
    total = 0
    for path in paths:
        if path is None or not Path(path).exists():
            continue
        files = [Path(path)] if Path(path).is_file() else Path(path).rglob("*")
        for file in files:
            try:
                total += file.stat().st_size if file.is_file() else 0
            except OSError:
                continue
    return total


def size_text(n: int | None) -> str:
    if n is None:
        return "an unknown amount"
    return f"{n / 2**20:.1f} MiB" if n >= 2**20 else f"{n / 2**10:.0f} KiB"


def disk_full_message(what: str, folder: Path, written: int) -> str:
    need = (f"it had written {size_text(written)} when the disk filled, so it needs more than that"
            if written else "it could not write anything")
    return (f"disk full: {what} could not be written in {folder} ({size_text(free_bytes(folder))} free on that disk; "
            f"{need}); what it wrote was removed and finished steps are kept: free space there, then rerun the same "
            f"command to go on from there")


@contextmanager
def disk_full_said(what: str, folder: Path, *written: Path | None) -> Iterator[None]:
    """Turn a full disk inside the block into one ``DiskFull`` line naming ``what`` and ``folder``; ``written``:
    the temporary files or folders the block was writing, measured before they are removed."""
    try:
        yield
    except DiskFull:
        raise
    except Exception as exc:
        if is_disk_full(exc):
            raise DiskFull(disk_full_message(what, Path(folder), written_bytes(*written))) from exc
        if isinstance(exc, CompresskitError) and not isinstance(exc, PassFailed):
            raise  # a refusal of compresskit's own (a pass that crashed is PassFailed: it may be the disk)
        root = exc
        while root.__cause__ is not None:  # what the library said, not compresskit's "crashed" wrapper
            root = root.__cause__
        said = (str(root).strip().splitlines() or [""])[0][:200]
        free = free_bytes(Path(folder))
        if (free is not None and free < NEARLY_FULL) or _failed_stream(exc):
            raise DiskFull(disk_full_message(what, Path(folder), written_bytes(*written))
                           + f" (the writer said {type(root).__name__}: {said})") from exc
        raise
