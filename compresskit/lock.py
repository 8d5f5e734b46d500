"""One owner per run folder: an advisory lock held for the whole run (or bench).

    with run_lock(run_dir):            # RunFolderBusy (one line, exit 2) if another process holds it
        ...
    with run_lock(run_dir, wait=True): # or wait until the other run is done

The lock is ``flock`` on ``RUN_DIR/.lock``: the kernel releases it when its process ends, however it
ends (SIGKILL included), so a killed run never leaves a folder nobody can take. The file records the
owner's pid, host and start time, so the refusal can say who holds it. The lock is re-entrant within a
process (``compresskit run`` holds it across the steps and the measurement; each takes it again).
A process forked while the lock is held (OpenVINO's telemetry forks one when a model is converted) closes
its copy of the descriptor at once: with ``flock`` a forked copy would otherwise keep the folder locked
after its owner let go. Temporary folders of a run folder are deleted only under its lock, i.e. when their
owner is gone.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import CompresskitError

LOCK_FILE = ".lock"
_held: dict[str, int] = {}  # lock path -> how many nested holders in this process
_fds: dict[str, int] = {}  # lock path -> the descriptor that holds it in this process


def _close_in_forked_child() -> None:
    for fd in _fds.values():
        try:
            os.close(fd)  # the child's copy only: closing a duplicate does not release the parent's flock
        except OSError:
            pass
    _fds.clear()
    _held.clear()


os.register_at_fork(after_in_child=_close_in_forked_child)


class RunFolderBusy(CompresskitError):
    """Another process owns the run folder."""


def _owner(path: Path, patience_s: float = 1.0) -> str:
    """Who holds the lock, as its file says; the holder writes it just after taking the lock, so an empty
    or half-written file is read again for up to ``patience_s``."""
    deadline = time.monotonic() + patience_s
    while True:
        try:
            info = json.loads(path.read_text("utf-8"))
            return f"pid {info['pid']} on {info['host']}, since {info['started']}"
        except (OSError, ValueError, KeyError, TypeError):
            if time.monotonic() >= deadline:
                return "another process"
            time.sleep(0.02)


@contextmanager
def run_lock(run_dir: Path, *, wait: bool = False) -> Iterator[None]:
    """Hold ``run_dir``'s lock for the block; RunFolderBusy at once if it is taken, unless ``wait``."""
    import fcntl

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / LOCK_FILE
    key = str(path.resolve())
    if key in _held:
        _held[key] += 1
        try:
            yield
        finally:
            _held[key] -= 1
        return
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    _fds[key] = fd
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            raise RunFolderBusy(f"{run_dir} is in use by another run ({_owner(path)}); wait for it to finish, "
                                f"rerun with --wait, or use another --out") from None
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                 "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}).encode())
        _held[key] = 1
        try:
            yield
        finally:
            del _held[key]
    finally:
        del _fds[key]
        os.close(fd)  # closing the descriptor releases the lock
