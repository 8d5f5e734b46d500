"""Artifacts: folders with a ``manifest.json`` that names what they are and checksums what they hold.

    manifest.json = {"schema": "compresskit.artifact/2", "id", "parent_id", "format", "producer",
                     "io", "dataset", "lineage", "meta", "files": {relative path: sha256}}

``dataset`` (the data the generator learnt: its train captions calibrate and its eval split scores) and
``lineage`` (input, then one ``{"pass", "id"}`` per step) are set by the runner from the step's input, never
by a pass, so no pass can drop them. ``meta`` holds the pass's reported figures.

``id`` is a hash chain: pass name + canonical config + the recipe's seed (every pass draws its noise,
calibration rows or batches from it) + parent id + versions (of compresskit and the libraries the pass uses),
so the same recipe over the same input gives the same ids, and a config or seed change changes the id of that
step and of every step after it. Loading an artifact checks every file against the
manifest before anything reads it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from .cache import stable_hash
from .errors import ArtifactError
from .model_files import sha256_file

MANIFEST = "manifest.json"
SCHEMA = "compresskit.artifact/2"  # 2: dataset and lineage carried by the runner


class Format(StrEnum):
    """What an artifact's payload is. Adding a format: a member here, its row in FORMATS, a loader in runtimes."""

    TORCH = "torch"
    ONNX = "onnx"
    OPENVINO = "openvino"
    BUNDLE = "bundle"


@dataclass(frozen=True)
class FormatInfo:
    backend: str  # the runtime library that runs it (the name reports use)
    reference: str  # the teacher reference a candidate of this format is timed against
    payload: str  # what the folder holds


FORMATS: dict[Format, FormatInfo] = {
    Format.TORCH: FormatInfo("torch", "baseline", "config.json or factory.json + model.safetensors"),
    Format.ONNX: FormatInfo("onnxruntime", "teacher_onnx", "model.onnx"),
    Format.OPENVINO: FormatInfo("openvino", "teacher_openvino", "model.xml + model.bin"),
    # caption -> image without torch (runtimes.bundle); its generator is timed against the teacher in torch
    Format.BUNDLE: FormatInfo("bundle", "baseline", "bundle.json + tokenizer.json + text encoder + generator"),
}


@dataclass(frozen=True)
class Artifact:
    path: Path
    id: str
    parent_id: str | None
    format: Format
    producer: dict
    io: dict
    files: dict[str, str]
    meta: dict = field(default_factory=dict)
    dataset: dict = field(default_factory=dict)
    lineage: list = field(default_factory=list)

    def file(self, name: str) -> Path:
        """Path of a payload file the manifest lists (checked when the artifact was loaded)."""
        if name not in self.files:
            raise ArtifactError(f"{self.path} has no {name} in its manifest; rebuild this step")
        return self.path / name


def artifact_id(pass_name: str, config: dict, parent_id: str | None, versions: dict, seed: int) -> str:
    return stable_hash({"pass": pass_name, "config": config, "seed": seed, "parent": parent_id, "versions": versions},
                       length=16)


def _payload_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST)


def write_manifest(folder: Path, *, id: str, parent_id: str | None, format: str, producer: dict,
                   io: dict, dataset: dict, lineage: list, meta: dict | None = None) -> Artifact:
    """Checksum every file in ``folder`` and write its manifest (call on the temporary folder)."""
    if format not in set(Format):
        raise ArtifactError(f"unknown artifact format {format!r}; one of {', '.join(Format)}")
    format = Format(format)
    files = {p.relative_to(folder).as_posix(): sha256_file(p) for p in _payload_files(folder)}
    manifest = {"schema": SCHEMA, "id": id, "parent_id": parent_id, "format": str(format), "producer": producer,
                "io": io, "dataset": dataset, "lineage": lineage, "meta": meta or {}, "files": files}
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    return Artifact(folder, id, parent_id, format, producer, io, files, meta or {}, dataset, lineage)


def load_artifact(folder: Path, *, verify: bool = True) -> Artifact:
    """Read the manifest and (by default) check every listed file's sha256; ArtifactError names the file."""
    folder = Path(folder)
    try:
        m = json.loads((folder / MANIFEST).read_text("utf-8"))
    except FileNotFoundError:
        raise ArtifactError(f"{folder} has no {MANIFEST}: not a finished artifact") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ArtifactError(f"{folder / MANIFEST} is unreadable ({exc}); delete the folder to rebuild it") from None
    if not isinstance(m, dict) or m.get("schema") != SCHEMA:
        raise ArtifactError(f"{folder / MANIFEST} is not a compresskit artifact manifest ({SCHEMA}); an older "
                            f"compresskit wrote it: delete the folder to rebuild it")
    if m.get("format") not in set(Format):
        raise ArtifactError(f"{folder / MANIFEST}: unknown format {m.get('format')!r}; one of {', '.join(Format)}")
    artifact = Artifact(folder, m["id"], m.get("parent_id"), Format(m["format"]), m.get("producer", {}),
                        m.get("io", {}), m.get("files", {}), m.get("meta", {}), m.get("dataset", {}), m.get("lineage", []))
    if verify:
        for name, expected in artifact.files.items():
            path = folder / name
            if not path.is_file():
                raise ArtifactError(f"{path} is missing; the artifact is incomplete, rebuild this step")
            if sha256_file(path) != expected:
                raise ArtifactError(f"{path} does not match its manifest checksum (corrupt or replaced); rebuild this step")
    return artifact
