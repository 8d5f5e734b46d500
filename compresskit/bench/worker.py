"""``python -m compresskit.bench.worker``: one candidate's runtimes in a process of their own.

The harness (``bench.harness``) starts one worker per candidate, so no other runtime's thread pool lives
in the process being timed. It sends one JSON command per line on stdin; the worker answers one JSON line
on the stdout it started with (whatever libraries print goes to stderr instead):

    {"op": "load", "key": K, "artifact": DIR, "deploy": {Deployment fields}}  -> {"settings": {...}}
    {"op": "latency", "key": K, "batch": B, "warmup": W, "calls": N}          -> {"ms": [N per-call times]}
                                         (optional "warmup_s": warm up for at least that long, too)
    {"op": "throughput", "key": K, "batch": B, "warmup": W, "calls": N}       -> {"ips": images per second}
    {"op": "e2e", "key": K, "caption": C, "warmup": W, "calls": N}            -> {"ms": [...]} caption -> image
    {"op": "quit"}

A failure answers {"error": "one line"}. Inputs are ``parity_inputs`` (seeded), the same in every worker.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path


def _serve(protocol) -> None:
    # imported here, after main() points stdout at stderr: what a library prints on import must not reach the protocol
    from ..artifact import load_artifact
    from ..models.inputs import caption_inputs  # as above
    from ..passes.parity import parity_inputs  # as above
    from ..runtimes import Deployment, load_runtime  # as above
    from .speed import time_calls, warm_up  # as above

    runtimes: dict = {}
    artifacts: dict = {}
    encoder = None

    def handle(command: dict) -> dict:
        nonlocal encoder
        op, key = command["op"], command.get("key")
        if op == "load":
            artifacts[key] = load_artifact(Path(command["artifact"]))
            runtimes[key] = load_runtime(artifacts[key], deploy=Deployment(**command["deploy"]))
            return {"settings": runtimes[key].settings}
        runtime, io = runtimes[key], artifacts[key].io
        if op == "latency":
            inputs = parity_inputs(io, command["batch"], command["batch"])
            warm_up(lambda: runtime(inputs), command["warmup"], command.get("warmup_s", 0.0))
            return {"ms": time_calls(lambda: runtime(inputs), command["calls"])}
        if op == "throughput":
            inputs = parity_inputs(io, command["batch"], command["batch"])
            runtime.images_per_second(inputs, command["warmup"])
            return {"ips": runtime.images_per_second(inputs, command["calls"])}
        if op == "e2e" and runtime.embed is not None:  # a bundle: its own tokenizer and text encoder, no torch
            z = parity_inputs(io, 1, 0)["z"]

            def bundle_caption_to_image():
                return runtime({"z": z, **runtime.embed([command["caption"]])})

            warm_up(bundle_caption_to_image, command["warmup"], command.get("warmup_s", 0.0))
            return {"ms": time_calls(bundle_caption_to_image, command["calls"])}
        if op == "e2e":
            if encoder is None:
                import torch  # the torch text encoder: only a non-bundle candidate's e2e loads it

                from ..text import TextEncoder  # imports torch, as above

                if runtime.threads:
                    torch.set_num_threads(runtime.threads)
                encoder = TextEncoder(cache=False)
            z = parity_inputs(io, 1, 0)["z"]

            def caption_to_image():
                return runtime(caption_inputs(io, [command["caption"]], z, encoder))

            warm_up(caption_to_image, command["warmup"], command.get("warmup_s", 0.0))
            return {"ms": time_calls(caption_to_image, command["calls"])}
        raise ValueError(f"unknown op {op!r}")

    for line in sys.stdin:
        command = json.loads(line)
        if command["op"] == "quit":
            return
        try:
            answer = handle(command)
        except Exception as exc:  # noqa: BLE001 - the harness turns it into a one-line CompresskitError
            message = " ".join(str(exc).split()) or type(exc).__name__
            answer = {"error": f"{type(exc).__name__}: {message}"[:500]}
        protocol.write(json.dumps(answer) + "\n")
        protocol.flush()


def main() -> None:
    protocol = os.fdopen(os.dup(sys.stdout.fileno()), "w")  # answers go here ...
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # ... and anything a library prints goes to stderr
    _serve(protocol)
    # nothing is left to write: leave without the interpreter's teardown of torch and the runtimes (~0.5 s a
    # worker, and a bench closes ~16 of them)
    for stream in (protocol, sys.stdout, sys.stderr):
        stream.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
