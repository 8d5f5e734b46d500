"""The run-folder lock in one process: what a forked child and a half-written owner file do to it."""

from __future__ import annotations

import multiprocessing
import os
import threading
import time

import pytest

from compresskit.lock import LOCK_FILE, RunFolderBusy, _owner, run_lock


def _sleep(started, seconds: float) -> None:
    started.set()
    time.sleep(seconds)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork is POSIX-only")
def test_a_child_forked_while_the_lock_is_held_does_not_keep_the_folder_locked(tmp_path):
    # OpenVINO's telemetry forks such a child when a model is converted, in the middle of a run
    fork = multiprocessing.get_context("fork")
    started = fork.Event()
    with run_lock(tmp_path):
        child = fork.Process(target=_sleep, args=(started, 5))
        child.start()
        assert started.wait(timeout=30), "the child runs"
    try:
        assert child.is_alive()
        with run_lock(tmp_path):  # the owner let go; the sleeping child must not hold the folder
            pass
    finally:
        child.terminate()
        child.join()


def test_another_owner_still_refuses_and_the_lock_is_re_entrant_within_a_process(tmp_path):
    import fcntl

    with run_lock(tmp_path), run_lock(tmp_path):  # nested: the same owner
        other = os.open(tmp_path / LOCK_FILE, os.O_RDWR)  # another open file description: another owner
        try:
            with pytest.raises(BlockingIOError):
                fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
        finally:
            os.close(other)
    with run_lock(tmp_path):
        pass


def test_the_refusal_names_an_owner_that_is_still_writing_its_name(tmp_path):
    path = tmp_path / LOCK_FILE
    path.write_text("")  # the owner took the lock and has not written who it is yet

    def write_owner() -> None:
        time.sleep(0.1)
        path.write_text('{"pid": 123, "host": "edge", "started": "2026-11-30T00:00:00Z"}')

    writer = threading.Thread(target=write_owner)
    writer.start()
    try:
        assert _owner(path) == "pid 123 on edge, since 2026-11-30T00:00:00Z"
    finally:
        writer.join()
    path.write_text("not json")
    assert _owner(path, patience_s=0.05) == "another process"


def test_a_held_folder_is_refused_in_one_line_naming_the_owner(tmp_path):
    import subprocess
    import sys

    code = ("import sys, time; from pathlib import Path; from compresskit.lock import run_lock\n"
            "with run_lock(Path(sys.argv[1])):\n print('held', flush=True); time.sleep(30)")
    holder = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(RunFolderBusy, match=rf"in use by another run \(pid {holder.pid} on .*--wait"):
            with run_lock(tmp_path):
                pass
    finally:
        holder.kill()
        holder.wait()
