"""A child that a library forks inside compresskit (OpenVINO's telemetry does, on each conversion) neither hangs
on the parent's garbage nor ignores the parent's SIGTERM (compresskit/forking.py).

Each case runs in a fresh interpreter (a fork of the test process would carry pytest's own state)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

# A garbage reference cycle holding an OpenVINO compiled model, then a fork from a thread (as the telemetry
# does) whose child runs the garbage collector: the model's destructor waits for executor threads that a forked
# child does not have.
GARBAGE = textwrap.dedent("""
    import gc, multiprocessing, sys, threading
    import numpy as np, openvino as ov
    from openvino import opset13 as ops
    if sys.argv[1] == "with":
        import compresskit  # noqa: F401
    x = ops.parameter([1, 16, 32, 32], np.float32, name="x")
    w = ops.constant(np.random.default_rng(0).standard_normal((16, 16, 3, 3)).astype(np.float32))
    y = ops.convolution(ops.convolution(x, w, [1, 1], [1, 1], [1, 1], [1, 1]), w, [1, 1], [1, 1], [1, 1], [1, 1])
    compiled = ov.Core().compile_model(ov.Model([y], [x]), "CPU",
                                       {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": 2,
                                        "INFERENCE_PRECISION_HINT": "f32"})
    request = compiled.create_infer_request()
    for _ in range(50):
        request.infer({"x": np.ones((1, 16, 32, 32), np.float32)})
    gc.disable()
    cycle = [compiled, request]
    cycle.append(cycle)
    del compiled, request, cycle

    def fork():
        child = multiprocessing.get_context("fork").Process(target=gc.collect, daemon=True)
        child.start()
        child.join(5)
        print("hung" if child.is_alive() else f"exited {child.exitcode}", flush=True)
        if child.is_alive():
            child.kill()

    thread = threading.Thread(target=fork)
    thread.start()
    thread.join()
""")

# A child stuck in native code (a mutex locked twice) under the CLI's Python-level SIGTERM handler.
STUCK = textwrap.dedent("""
    import ctypes, multiprocessing, signal, sys
    import compresskit  # noqa: F401
    from compresskit import cli_errors
    if sys.argv[1] == "with":
        signal.signal(signal.SIGTERM, cli_errors._interrupt)

    def stuck():
        libc = ctypes.CDLL(None)
        mutex = ctypes.create_string_buffer(64)  # zeroed: a default (non-recursive) pthread mutex
        libc.pthread_mutex_lock(mutex)
        libc.pthread_mutex_lock(mutex)  # never returns; signals do not interrupt it

    child = multiprocessing.get_context("fork").Process(target=stuck, daemon=True)
    child.start()
    child.join(0.5)
    child.terminate()
    child.join(5)
    print("alive" if child.is_alive() else f"exited {child.exitcode}", flush=True)
    if child.is_alive():
        child.kill()
""")


def _run(script: str, arg: str) -> str:
    return subprocess.run([sys.executable, "-c", script, arg], capture_output=True, text=True, timeout=120,
                          check=True).stdout.strip()


def test_a_forked_child_does_not_collect_the_parents_openvino_garbage():
    if _run(GARBAGE, "without") != "hung":
        pytest.skip("this OpenVINO no longer hangs a forked child on a collected compiled model")
    assert _run(GARBAGE, "with") == "exited 0"


def test_a_forked_child_stuck_in_native_code_still_dies_on_sigterm_under_the_clis_handler():
    assert _run(STUCK, "with") == "exited -15", "SIGTERM's default action in the child"
