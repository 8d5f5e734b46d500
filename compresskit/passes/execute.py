"""Running one pass into one artifact folder: its id, the run itself, and reusing a finished one.

Shared by the runner (a recipe's steps) and the bench (the teacher's plain exports), so both build the same
artifact for the same pass, config and parent.
"""

from __future__ import annotations

import dataclasses
import shutil
import traceback
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from .. import __version__
from ..artifact import Artifact, artifact_id, load_artifact, sha256_file, write_manifest
from ..cache import atomic_dir
from ..diskspace import disk_full_said, is_disk_full
from ..errors import ArtifactError, CompresskitError, PassFailed
from ..models.io import DISC_FILE
from .base import PassContext, PassResult


def library_versions(libraries: tuple[str, ...]) -> dict:
    found = {"compresskit": __version__}
    for lib in libraries:
        try:
            found[lib] = version(lib)
        except PackageNotFoundError:
            found[lib] = "not installed"
    return found


def pass_output_id(cls, name: str, config: dict, parent_id: str, teacher: Artifact | None = None, *,
                   seed: int) -> str:
    """The id of what pass ``name`` (class ``cls``) makes from ``parent_id`` with ``config`` under the recipe's
    ``seed`` (a hash chain); a step that reads the teacher's discriminator (``cls.reads_teacher_discriminator``)
    adds that file's hash."""
    validated = cls.Config.model_validate(config)
    machine = cls.machine_key(validated)
    reads = teacher is not None and cls.reads_teacher_discriminator(validated)
    disc = teacher.path / DISC_FILE if reads else None
    extra = {"teacher_discriminator": sha256_file(disc) if disc.is_file() else None} if reads else {}
    return artifact_id(name, config, parent_id, {"pass": cls.version, **library_versions(cls.libraries), **machine, **extra},
                       seed)


def produce(cls, name: str, config, src: Artifact, folder: Path, output_id: str, ctx: PassContext) -> Artifact:
    """Run a pass into ``folder``: written in a temporary folder, manifest last, then renamed into place.

    The new artifact inherits ``src``'s io spec, dataset and lineage (plus this step): the pass cannot drop
    them. Whatever a pass raises that is not a CompresskitError (a bug, a user model Torch-Pruning cannot
    handle) becomes one PassFailed line naming the step, so the run records a failed step, not a traceback; a
    full disk becomes one DiskFull line (the temporary folder is removed, the step's checkpoints are kept).
    """
    ctx = ctx.for_step(src, cls.needs, ctx.scratch)
    with atomic_dir(folder) as tmp, disk_full_said(f"{name}'s artifact {folder.name}", folder.parent, tmp, ctx.scratch):
        try:
            result = cls(config).run(src, tmp, ctx)
        except CompresskitError:
            raise
        except Exception as exc:  # noqa: BLE001 - one line naming the pass, instead of a traceback
            if is_disk_full(exc):
                raise  # disk_full_said says it in one line
            where = traceback.extract_tb(exc.__traceback__)[-1]
            first_line = (str(exc).strip().splitlines() or [""])[0][:300]
            raise PassFailed(f"{name} crashed: {type(exc).__name__}: {first_line} (at {Path(where.filename).name}:"
                             f"{where.lineno}); the step wrote nothing; please report it") from exc
        if not isinstance(result, PassResult):
            raise PassFailed(f"{name}: run() returned {type(result).__name__}, not a PassResult; fix the pass")
        result.checked(cls)
        written = write_manifest(
            tmp, id=output_id, parent_id=src.id, format=cls.produces,
            producer={"pass": name, "config": config.model_dump(mode="json"), "versions": library_versions(cls.libraries)},
            io=src.io, dataset=src.dataset, lineage=[*src.lineage, {"pass": name, "id": output_id}],
            meta={**result.details, **result.metrics})
    return dataclasses.replace(written, path=folder)


def reuse_artifact(folder: Path, log: Callable[[str], None] = lambda message: None) -> Artifact | None:
    """The intact artifact in ``folder``, or None (a folder that fails its checksums is deleted, said in ``log``)."""
    if not folder.exists():
        return None
    try:
        return load_artifact(folder)
    except ArtifactError as exc:
        log(f"rebuilding {folder.name}: {exc}")
        shutil.rmtree(folder)
        return None
