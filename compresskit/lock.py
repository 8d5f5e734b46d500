"""Advisory locks between processes: one owner per run folder, one builder per artifact id, and the machine.

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

    with exclusive(STORE / ".locks" / f"{key}.lock"):   # one process at a time checks or builds this artifact
        ...
    with building():                  # a pass computes: shared with other builders, never beside a timing
        ...
    with measuring():                 # latency is timed: alone on the machine (builders finish first, new ones wait)
        ...

The machine locks are files under ``cache_root()/locks/`` (one cache root per machine); see ``measuring``.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from .cache import cache_root
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


@contextmanager
def exclusive(path: Path, *, on_wait: Callable[[], None] | None = None) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` (created, with its folder, if missing) for the block, waiting for it.

    ``on_wait`` is called once, before blocking, when another process holds it. Re-entrant within a process and
    dropped by a forked child, like ``run_lock``.
    """
    import fcntl

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
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
        _flock(fd, fcntl.LOCK_EX, on_wait)
        _held[key] = 1
        try:
            yield
        finally:
            del _held[key]
    finally:
        del _fds[key]
        os.close(fd)


# ---- the machine: builders share it, a measurement has it alone -------------------------------------------------
#
# Two lock files under ``cache_root()/locks/`` (one machine, one cache root):
#
#   building():  gate EX, then machine SH, then gate released     many builders at once
#   measuring(): gate EX, then machine EX, both held for the block one measurement, and nobody building
#
# A measurer that waits holds the gate, so a builder that comes after it waits for the gate: no stream of new
# builders can starve a measurement (writer-fair). Nobody waits for the gate while holding the machine: a
# measurement inside a build of the same process (select_subnet times its candidates in its step) first lets go
# of its own shared hold, else two processes that each build and then measure would wait for each other forever
# (each holds SH, each waits for EX). Afterwards it takes its shared hold back under the gate it still holds.
# The state is per process (not per thread): the library builds and measures from one thread.

LOCKS_DIR = "locks"
GATE_FILE, MACHINE_FILE = "gate.lock", "machine.lock"


@dataclass
class _Machine:
    building: int = 0  # nested building() blocks in this process
    measuring: int = 0  # nested measuring() blocks in this process
    gate: int | None = None  # descriptors, open while this process holds either
    machine: int | None = None


_machine = _Machine()


def _forget_machine_in_forked_child() -> None:
    global _machine
    for fd in (_machine.gate, _machine.machine):
        if fd is not None:
            try:
                os.close(fd)  # the child's copy only: the parent keeps its locks
            except OSError:
                pass
    _machine = _Machine()


os.register_at_fork(after_in_child=_forget_machine_in_forked_child)


def _flock(fd: int, mode: int, on_wait: Callable[[], None] | None = None) -> None:
    """``flock(fd, mode)``, waiting; ``on_wait()`` first if it would block."""
    import fcntl

    try:
        fcntl.flock(fd, mode | fcntl.LOCK_NB)
    except BlockingIOError:
        if on_wait is not None:
            on_wait()
        fcntl.flock(fd, mode)


def _shared_holders(fd: int) -> int:
    """How many hold the file behind ``fd`` shared (builders), from /proc/locks (0 where it cannot be read)."""
    stat = os.fstat(fd)
    where = f"{os.major(stat.st_dev):02x}:{os.minor(stat.st_dev):02x}:{stat.st_ino}"
    try:
        lines = Path("/proc/locks").read_text().splitlines()
    except OSError:
        return 0
    # "1: FLOCK  ADVISORY  READ 1234 fe:00:5678 0 EOF"; a waiter's line ("1: -> FLOCK ...") has its fields shifted
    return sum(1 for fields in (line.split() for line in lines)
               if len(fields) > 5 and fields[1] == "FLOCK" and fields[3] == "READ" and fields[5] == where)


def _open_machine() -> None:
    folder = cache_root() / LOCKS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    _machine.gate = os.open(folder / GATE_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    _machine.machine = os.open(folder / MACHINE_FILE, os.O_RDWR | os.O_CREAT, 0o644)


def _close_machine() -> None:
    for name in ("machine", "gate"):  # closing a descriptor releases its lock: the machine first
        fd = getattr(_machine, name)
        setattr(_machine, name, None)
        if fd is not None:
            os.close(fd)


def _share_machine(log: Callable[[str], None] | None) -> None:
    """Take the machine shared, through the gate (which is let go at once)."""
    import fcntl

    def waiting() -> None:
        if log is not None:
            log("waiting for a measurement on this machine to finish before building")

    _flock(_machine.gate, fcntl.LOCK_EX, waiting)
    try:
        _flock(_machine.machine, fcntl.LOCK_SH)  # a measurer holds the gate while it holds the machine: free now
    finally:
        fcntl.flock(_machine.gate, fcntl.LOCK_UN)


@contextmanager
def building(log: Callable[[str], None] | None = None) -> Iterator[None]:
    """Hold this machine for building (a pass, a quality run): shared with other builders, never with a measurement.

    Waits while a measurement runs or waits (``log`` says so once). Re-entrant; inside ``measuring()`` a no-op.
    """
    if _machine.building or _machine.measuring:
        _machine.building += 1
        try:
            yield
        finally:
            _machine.building -= 1
        return
    try:
        _open_machine()
        _share_machine(log)
        _machine.building = 1
        try:
            yield
        finally:
            _machine.building = 0
    finally:
        _close_machine()


@contextmanager
def measuring(log: Callable[[str], None] | None = None) -> Iterator[None]:
    """Hold this machine alone for timing: waits until every builder's block is done, and new builders wait.

    ``log`` says once that it waits (and for how many builds). Re-entrant; inside ``building()`` of the same process
    it lets go of the process's shared hold while it waits and measures, and takes it back afterwards.
    """
    import fcntl

    if _machine.measuring:
        _machine.measuring += 1
        try:
            yield
        finally:
            _machine.measuring -= 1
        return
    inside_build = _machine.building > 0
    said = []

    def waiting(what: str) -> None:
        if log is not None and not said:
            said.append(what)
            log(what)

    try:
        if inside_build:
            fcntl.flock(_machine.machine, fcntl.LOCK_UN)  # never wait for the gate holding the machine
        else:
            _open_machine()
        _flock(_machine.gate, fcntl.LOCK_EX, lambda: waiting(
            "waiting for another measurement on this machine to finish before timing"))
        _flock(_machine.machine, fcntl.LOCK_EX, lambda: waiting(_builds_message(_shared_holders(_machine.machine))))
        _machine.measuring = 1
        try:
            yield
        finally:
            _machine.measuring = 0
    finally:
        if inside_build:
            _share_machine(None)  # the gate is ours (or, interrupted before it, taken again): the machine is free
        else:
            _close_machine()


def _builds_message(builders: int) -> str:
    if builders <= 0:
        return "waiting for the machine to be free before timing"
    return f"waiting for {builders} build{'s' if builders > 1 else ''} on this machine to finish before timing"
