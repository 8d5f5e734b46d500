"""The teacher merely exported: the references that separate what a runtime gives from what compression adds.

    RUN_DIR/baselines/teacher_onnx-<id>/       export_onnx of the recipe's input (default settings)
    RUN_DIR/baselines/teacher_openvino-<id>/   export_openvino of that ONNX model (fp32 IR)
    RUN_DIR/baselines/teacher_int8-<id>/       quantize_nncf of that IR: NNCF PTQ, default settings

Every user can produce these in one line, so a compression recipe is worth what it adds beyond them.
With an artifact store (``run(..., store=)``, a search's trials) they are copied from it when it holds them and
published to it when made here, as a recipe's steps are: the trials of one search export the teacher once.
They are made by the same passes a recipe uses, with the same hash-chained ids, so a later ``bench`` of
the run reuses them; a reference that cannot be built is reported (and its speedups are missing, so a
gate that names one fails) rather than stopping the measurement.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path

from ..artifact import Artifact
from ..errors import CompresskitError, DiskFull
from ..passes.base import PassContext
from ..passes.execute import pass_output_id, produce, reuse_artifact
from ..passes.store import ArtifactStore
from ..registry import pass_class
from ..threads import torch_threads
from .names import REFERENCES

BASELINES_DIR = "baselines"
EXPORT_CHAIN = tuple(zip(REFERENCES, ("export_onnx", "export_openvino", "quantize_nncf")))


def teacher_exports(run_dir: Path, teacher: Artifact, *, seed: int = 0, threads: int | None = None,
                    progress: Callable[[str], None] = lambda message: None, store: ArtifactStore | None = None
                    ) -> tuple[dict[str, Artifact], dict[str, str]]:
    """({reference name: artifact}, {reference name: why it could not be built}) for the teacher's plain exports."""
    folder = Path(run_dir) / BASELINES_DIR
    folder.mkdir(parents=True, exist_ok=True)
    made: dict[str, Artifact] = {}
    errors: dict[str, str] = {}
    current = teacher
    ctx = PassContext(run_dir=Path(run_dir), seed=seed, threads=threads, teacher=teacher)
    with torch_threads(threads):
        for position, (name, pass_name) in enumerate(EXPORT_CHAIN):
            cls = pass_class(pass_name)
            config = cls.Config()  # default settings: what a user gets in one line
            output_id = pass_output_id(cls, pass_name, config.model_dump(mode="json"), current.id, seed=seed)
            target, key = folder / f"{name}-{output_id}", f"{pass_name}-{output_id}"
            with store.claim(key) if store is not None else contextlib.nullcontext():
                found = reuse_artifact(target)
                if found is None and store is not None:
                    found = store.fetch(key, target)
                if found is None:
                    progress(f"exporting the teacher: {name} ({pass_name}, default settings)")
                    try:
                        found = produce(cls, pass_name, config, current, target, output_id, ctx)
                    except DiskFull:
                        raise  # not the teacher's failure: the bench stops, said in one line
                    except CompresskitError as exc:
                        errors[name] = f"{pass_name} of the teacher failed: {exc}"
                        errors.update({later: f"not built: {name} failed" for later, _ in EXPORT_CHAIN[position + 1:]})
                        break
                if store is not None:
                    store.publish(target, key)  # kept if there already
            made[name] = found
            current = found
    return made, errors
