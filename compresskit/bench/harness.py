"""Isolated timing: each candidate in a worker process of its own, only one of them busy at a time.

    with WorkerPool(["teacher", "student"]) as pool:
        pool.load("latency", {"teacher": (dir_a, Deployment(...)), "student": (dir_b, Deployment(...))})
        ms = pool.rounds({"teacher": {"op": "latency", ...}, "student": {...}}, rounds=10, seed=0)

Why: runtimes that share a process (or run at once) share the cores. Thread pools of torch (OpenMP),
onnxruntime and OpenVINO (TBB) stay awake for a while after a call, so in one process a candidate is timed
against its predecessor's spinning threads, and always the same predecessor when the order is fixed.
Here every candidate has its own process; the harness sends a timed block to one worker at a time (the
others block on reading their pipe) and, before each block, waits until every worker's threads have gone
quiet (CPU time read from ``/proc/PID/task/*/schedstat``). The order of the candidates is shuffled in
every round with a seeded generator, so no candidate always follows the same one, and a slow spell of the
machine is spread over all of them: ratios between candidates measured in one run stay meaningful.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

from ..errors import CompresskitError
from ..lock import measuring
from ..runtimes import Deployment

QUIET_WINDOW_S = 0.005  # a window in which every worker together used < QUIET_SHARE of one core ...
QUIET_SHARE = 0.05
MAX_WAIT_S = 1.0  # ... is waited for at most this long before a block (then the block runs anyway)


class WorkerFailed(CompresskitError):
    """A worker process could not load or run its candidate."""

    exit_code = 1


def _cpu_ns(pid: int) -> int | None:
    """CPU time (ns) used so far by every thread of ``pid``; None where /proc has no schedstat."""
    total = 0
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            try:
                total += int((task / "schedstat").read_text().split()[0])
            except (OSError, ValueError, IndexError):
                continue  # a thread that just exited
    except OSError:
        return None
    return total


def wait_until_quiet(pids: list[int], window_s: float = QUIET_WINDOW_S, share: float = QUIET_SHARE,
                     max_wait_s: float = MAX_WAIT_S) -> float:
    """Block until the processes' threads together use < ``share`` of a core over ``window_s``; seconds waited."""
    started = time.perf_counter()
    before = [_cpu_ns(pid) for pid in pids]
    if any(b is None for b in before):  # no schedstat here: give idle pools a fixed moment to sleep
        time.sleep(window_s * 10)
        return time.perf_counter() - started
    while time.perf_counter() - started < max_wait_s:
        time.sleep(window_s)
        after = [_cpu_ns(pid) or 0 for pid in pids]
        if sum(after) - sum(before) < share * window_s * 1e9:
            break
        before = after
    return time.perf_counter() - started


class Worker:
    """One ``compresskit.bench.worker`` process; ``ask`` sends a command and waits for its answer."""

    def __init__(self, name: str):
        self.name = name
        self._quitting = False
        self._stderr = tempfile.TemporaryFile(mode="w+")
        self.process = subprocess.Popen([sys.executable, "-m", "compresskit.bench.worker"], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, stderr=self._stderr, text=True, bufsize=1)

    @property
    def pid(self) -> int:
        return self.process.pid

    def send(self, command: dict) -> None:
        try:
            self.process.stdin.write(json.dumps(command) + "\n")
            self.process.stdin.flush()
        except (BrokenPipeError, OSError):
            self._died()

    def receive(self) -> dict:
        line = self.process.stdout.readline()
        if not line:
            self._died()
        answer = json.loads(line)
        if "error" in answer:
            raise WorkerFailed(f"measuring {self.name} failed: {answer['error']}")
        return answer

    def ask(self, command: dict) -> dict:
        self.send(command)
        return self.receive()

    def _died(self):
        self.process.wait(timeout=30)
        self._stderr.seek(0)
        last = ([line for line in self._stderr.read().splitlines() if line.strip()] or ["no output"])[-1]
        raise WorkerFailed(f"the worker measuring {self.name} exited (code {self.process.returncode}): {last.strip()[:300]}")

    def quit(self) -> None:
        """Ask the worker to exit (``close`` waits for it); once."""
        if not self._quitting and self.process.poll() is None:
            self._quitting = True
            try:
                self.send({"op": "quit"})
            except WorkerFailed:
                pass  # it died: close reaps it

    def close(self) -> None:
        if self.process.poll() is None:
            try:
                self.quit()
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._stderr.close()


class WorkerPool:
    """One worker per candidate name, all closed on exit (also on error)."""

    def __init__(self, names: list[str]):
        self.workers: dict[str, Worker] = {}
        try:
            for name in names:
                self.workers[name] = Worker(name)
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        for worker in self.workers.values():  # every worker leaves at once, then each is waited for
            worker.quit()
        for worker in self.workers.values():
            worker.close()

    def load(self, key: str, what: dict[str, tuple[Path, Deployment]]) -> dict[str, dict]:
        """Load ``key``'s runtime in every named worker (in parallel); returns each runtime's settings."""
        for name, (folder, deploy) in what.items():
            self.workers[name].send({"op": "load", "key": key, "artifact": str(folder), "deploy": asdict(deploy)})
        return {name: self.workers[name].receive()["settings"] for name in what}

    def rounds(self, commands: dict[str, dict], *, rounds: int, seed: int) -> dict[str, list[dict]]:
        """Each named worker runs its command once per round, alone, in a seeded random order per round; the
        machine is held for measuring meanwhile (``lock.measuring``: no other process builds while it times)."""
        pids = [w.pid for w in self.workers.values()]
        answers: dict[str, list[dict]] = {name: [] for name in commands}
        with measuring():
            for order in round_orders(list(commands), rounds, seed):
                for name in order:
                    wait_until_quiet(pids)
                    answers[name].append(self.workers[name].ask(commands[name]))
        return answers


def round_orders(names: list[str], rounds: int, seed: int) -> list[list[str]]:
    """A seeded random order of ``names`` for each round (the same seed gives the same schedule)."""
    rng = random.Random(seed)
    orders = []
    for _ in range(rounds):
        order = list(names)
        rng.shuffle(order)
        orders.append(order)
    return orders


def time_alone(folder: Path, deploy: Deployment, *, warmup: int = 20, warmup_s: float = 1.0, rounds: int = 10,
               per_round: int = 20, block_warmup: int = 2, block_warmup_s: float = 0.05, seed: int = 0) -> list[float]:
    """Per-call latencies (ms) of one artifact alone in a fresh worker process, timed in the harness's blocks.

    The same schedule as a harness run (``rounds`` blocks of ``per_round`` calls, each after the pools went
    quiet and ``block_warmup`` untimed calls) with no co-candidate: the reference the harness is checked against.
    """
    command = {"op": "latency", "key": "alone", "batch": deploy.batch or 1, "warmup": block_warmup,
               "warmup_s": block_warmup_s, "calls": per_round}
    with measuring(), WorkerPool(["alone"]) as pool:  # the machine alone, warm-up to the last round
        pool.load("alone", {"alone": (Path(folder), deploy)})
        pool.rounds({"alone": {**command, "warmup": warmup, "warmup_s": warmup_s, "calls": 1}}, rounds=1, seed=seed)
        answers = pool.rounds({"alone": command}, rounds=rounds, seed=seed)["alone"]
    return [ms for answer in answers for ms in answer["ms"]]
