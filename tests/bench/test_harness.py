"""The isolated timing harness: one worker process per candidate, one busy at a time, seeded order."""

from __future__ import annotations

import subprocess
import sys
import time

import numpy as np
import pytest

from compresskit.bench.harness import WorkerFailed, WorkerPool, round_orders, time_alone, wait_until_quiet
from compresskit.recipe import parse_recipe
from compresskit.runner import run
from compresskit.runtimes import Deployment
from tests.passes.conftest import recipe_dict

LATENCY_1T = Deployment(threads=1, batch=1, hint="latency")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A tiny generator exported to ONNX and OpenVINO, and a 16x wider one in ONNX (the busy co-candidate)."""
    import torch

    from compresskit.models import create_generator, save_model

    folders = {}
    for name, ngf in (("small", 8), ("big", 64)):
        torch.manual_seed(0)
        model = save_model(tmp_path_factory.mktemp(name) / "g", create_generator(ngf=ngf, text_hidden=16, fuse_hidden=8))
        result = run(parse_recipe(recipe_dict(model, {"export_onnx": {}}, {"export_openvino": {}}), "r.yaml"),
                     tmp_path_factory.mktemp(name) / "run")
        folders[f"{name}_torch"] = str(result.input.path)
        folders[f"{name}_onnx"], folders[f"{name}_openvino"] = (step.path for step in result.steps)
    return folders


def test_round_orders_are_seeded_shuffles_with_every_name_once_per_round():
    names = ["baseline", "teacher_int8", "prune", "distill", "quantize_nncf"]
    orders = round_orders(names, 8, seed=3)
    assert orders == round_orders(names, 8, seed=3) and orders != round_orders(names, 8, seed=4)
    assert all(sorted(order) == sorted(names) for order in orders)
    assert len({tuple(order) for order in orders}) > 1, "not the same order every round"
    followers = {(a, b) for order in orders for a, b in zip(order, order[1:])}
    assert len({b for a, b in followers if a == "prune"}) > 1, "a candidate does not always follow the same one"


def test_wait_until_quiet_waits_out_a_busy_process_and_not_an_idle_one():
    busy = subprocess.Popen([sys.executable, "-c", "import time\nt = time.time()\nwhile time.time() - t < 0.4: pass\n"
                             "time.sleep(30)"])
    idle = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        time.sleep(0.15)  # both started; the busy one spins for 0.4 s from its start
        assert wait_until_quiet([idle.pid], max_wait_s=2) < 0.1
        assert 0.1 < wait_until_quiet([busy.pid, idle.pid], max_wait_s=2) < 1.5
    finally:
        busy.kill(), idle.kill()
        busy.wait(), idle.wait()


def test_a_worker_that_cannot_load_says_why_in_one_line(tmp_path):
    with WorkerPool(["ghost"]) as pool, pytest.raises(WorkerFailed, match=r"measuring ghost failed: ArtifactError: .*manifest"):
        pool.load("k", {"ghost": (tmp_path, LATENCY_1T)})


def test_closing_a_pool_ends_every_worker_cleanly_and_reaps_one_that_died(exported):
    pool = WorkerPool(["a", "b", "dead"])
    with pool:
        pool.load("k", {"a": (exported["small_openvino"], LATENCY_1T), "b": (exported["small_onnx"], LATENCY_1T)})
        pool.workers["dead"].process.kill()
    codes = {name: worker.process.returncode for name, worker in pool.workers.items()}
    assert codes["a"] == 0 and codes["b"] == 0, codes  # quit: flushed and left (os._exit(0)), not killed
    assert codes["dead"] not in (None, 0), codes  # reaped, no error raised for it


def _p50_of(folder, co_candidates: dict, rounds: int = 6) -> float:
    names = ["timed", *co_candidates]
    command = {"op": "latency", "key": "k", "batch": 1, "warmup": 2, "calls": 25}
    with WorkerPool(names) as pool:
        pool.load("k", {"timed": (folder, LATENCY_1T), **co_candidates})
        answers = pool.rounds({n: command for n in names}, rounds=rounds, seed=0)
    return float(np.median([ms for a in answers["timed"] for ms in a["ms"]]))


def test_a_busy_co_candidate_does_not_move_another_candidates_p50(exported):
    """A 16x heavier co-candidate on 2 threads with onnxruntime's idle spinning on shares the run: the small
    model's p50 stays where it is alone, within noise. Alone and shared runs alternate, so a slow spell of a
    shared machine hits both; the claim is on the median of the paired ratios."""
    busy = (exported["big_onnx"], Deployment(threads=2, batch=1, hint="latency", ort_spinning=True))
    alone, shared = [], []
    for _ in range(4):
        alone.append(_p50_of(exported["small_openvino"], {}))
        shared.append(_p50_of(exported["small_openvino"], {"busy": busy}))
    noise = (max(alone) - min(alone)) / np.median(alone)
    moved = abs(float(np.median(np.array(shared) / np.array(alone))) - 1.0)
    assert moved < max(0.15, noise), (alone, shared)


@pytest.mark.parametrize("busy_kind", ["onnxruntime spinning", "torch"])
def test_the_previous_candidates_threads_are_quiet_while_the_next_is_timed(exported, busy_kind):
    """The mechanism behind isolation, measured: right after its block, a spinning onnxruntime pool (or
    torch's OpenMP pool) keeps burning CPU; timed then (no wait), it steals from the next candidate's block.
    After ``wait_until_quiet`` it uses no CPU at all during that block."""
    from compresskit.bench.harness import _cpu_ns

    busy = {"onnxruntime spinning": (exported["big_onnx"], Deployment(threads=2, batch=1, ort_spinning=True)),
            "torch": (exported["big_torch"], Deployment(threads=2))}[busy_kind]
    command = {"op": "latency", "key": "k", "batch": 1, "warmup": 2, "calls": 25}
    stolen = {True: [], False: []}
    with WorkerPool(["timed", "busy"]) as pool:
        pool.load("k", {"timed": (exported["small_openvino"], LATENCY_1T), "busy": busy})
        pid = pool.workers["busy"].pid
        for quiet in (False, True) * 5:
            pool.workers["busy"].ask({**command, "calls": 20})
            if quiet:
                wait_until_quiet([pid])
            before = _cpu_ns(pid)
            pool.workers["timed"].ask(command)
            stolen[quiet].append((_cpu_ns(pid) - before) / 1e6)
    # the median: one block in five may meet a scheduler hiccup of a shared machine, the mechanism may not
    assert np.median(stolen[True]) < 1.0, f"the co-candidate used {stolen[True]} ms CPU during blocks after the wait"
    assert np.median(stolen[False]) > 2.0, f"control: without the wait it used only {stolen[False]} ms"


def test_benchmark_app_agrees_with_the_harness_on_a_tiny_ir(exported):
    from compresskit.bench.crosscheck import benchmark_app_p50
    from compresskit.runtimes import OPENVINO_XML

    xml = f"{exported['big_openvino']}/{OPENVINO_XML}"
    ours, theirs = [], []
    for _ in range(2):  # alternated, so a slow spell of the machine hits both
        ours.append(float(np.median(time_alone(exported["big_openvino"], LATENCY_1T, rounds=10, per_round=30))))
        theirs.append(benchmark_app_p50(xml, {"z": [1, 100], "text": [1, 384]}, threads=1, seconds=3)[0])
    assert np.median(ours) == pytest.approx(np.median(theirs), rel=0.15), (ours, theirs)
