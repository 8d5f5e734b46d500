"""A caption -> image bundle that runs without torch or transformers: numpy, ``tokenizers``, OpenVINO or onnxruntime.

    from compresskit.runtimes.bundle import Bundle

    bundle = Bundle("runs/edge-openvino-int8/artifacts/07-bundle-...")   # or any bundle folder
    images = bundle.generate(["red apple", "cat face"], seed=0)           # uint8 (N, 32, 32, 3)

A bundle folder (written by the ``bundle`` pass) holds ``bundle.json`` (what follows), the tokenizer
(``tokenizer.json``), the text encoder graph (ids + mask -> pooled sentence vector and token states) and the
generator graph, each an OpenVINO IR or an ONNX model. The steps, each done the way training did them:

1. tokenise: the package's own ``tokenizer.json`` (the tokenizer MiniLM was trained with), cut at
   ``max_tokens``, padded to the batch's longest caption rounded up to ``pad_to_multiple_of`` tokens (a
   dynamic-shape encoder re-plans for every new length: captions of 4, 7 and 5 tokens cost it ~1.8 ms a call
   here, padded to one length of 8 ~1.2 ms; padding is masked, so the vectors do not change);
2. look up: where the bundle holds the word-embedding table as ``.npy`` files (``word_embeddings`` in the
   spec), numpy reads the caption's rows from the memory-mapped table (INT8 rows times their scale, the same
   arithmetic the graph did) — the 30,522-row table never enters the compiled graph, which saves ~60 MiB of a
   fresh process's peak; otherwise the graph looks the ids up itself;
3. encode: the text encoder gives the unit-norm mean-pooled vector (``text``) and, for a generator that
   reads tokens, the token states zero-padded or cut to its ``token_length`` with their mask;
4. draw: noise ``z`` ~ N(0, 1) from numpy's ``default_rng(seed)`` (or the caller's own), then the generator;
   images in [-1, 1] become uint8 HWC.

These steps live in ``standalone_generate``, the one-file runner the ``bundle`` pass copies into every bundle as
``generate.py`` (``python BUNDLE/generate.py "red apple"`` on a device without compresskit); this runtime imports
them from there, so both draw the same pixels.

Nothing here imports torch, transformers or the rest of compresskit's training code (a test runs this module
in a fresh process and checks ``sys.modules``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..artifact import MANIFEST, load_artifact
from ..errors import ArtifactError
from ..text.captions import check_captions
from . import Deployment, Runtime, onnx_runtime, openvino_runtime
from . import standalone_generate as standalone
from .standalone_generate import (  # shared with the bundle's own generate.py: the same pixels
    draw_noise,
    generator_text_inputs,
    load_tokenizer,
    to_uint8,
)

BUNDLE_FILE = "bundle.json"
BUNDLE_FORMAT = "compresskit.bundle/2"  # 2: word embeddings may sit outside the graph, padding to a multiple
READABLE_FORMATS = ("compresskit.bundle/1", BUNDLE_FORMAT)


def _load(path: Path, backend: str, deploy: Deployment, all_outputs: bool) -> Runtime:
    if backend not in ("openvino", "onnxruntime"):
        raise ArtifactError(f"{path}: unknown backend {backend!r} in {BUNDLE_FILE}; one of openvino, onnxruntime")
    try:
        if backend == "openvino":
            return openvino_runtime(path, deploy=deploy, all_outputs=all_outputs)
        return onnx_runtime(path, deploy.threads, deploy.ort_spinning, all_outputs=all_outputs)
    except (RuntimeError, ValueError, OSError) as exc:  # the runtime's own parse or compile error, many lines long
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise ArtifactError(f"{path}: {backend} cannot load it ({first}); rebuild the bundle") from None


class WordEmbeddings(standalone.WordEmbeddings):
    """The word-embedding lookup outside the graph (``standalone_generate.WordEmbeddings``), its read errors
    as compresskit's ``ArtifactError``."""

    def __init__(self, folder: Path, spec: dict):
        try:
            super().__init__(folder, spec)
        except standalone.BundleError as exc:
            raise ArtifactError(str(exc)) from None


def read_spec(folder: Path) -> dict:
    """``bundle.json`` of a bundle folder, checked: one clear line when it is missing or not a bundle."""
    path = Path(folder) / BUNDLE_FILE
    try:
        spec = json.loads(path.read_text())
    except FileNotFoundError:
        raise ArtifactError(f"{folder} is not a bundle (no {BUNDLE_FILE}); pass the bundle step's folder") from None
    except (OSError, ValueError) as exc:
        raise ArtifactError(f"{path} cannot be read ({exc}); rebuild the bundle") from None
    if not isinstance(spec, dict) or spec.get("format") not in READABLE_FORMATS:
        raise ArtifactError(f"{path} is not a {BUNDLE_FORMAT} file; rebuild the bundle with this compresskit")
    missing = [spec[k]["file"] for k in ("text_encoder", "generator") if not (Path(folder) / spec[k]["file"]).exists()]
    lookup = spec["text_encoder"].get("word_embeddings") or {}
    for file in [spec["tokenizer"], *(lookup.get(k) for k in ("table", "scale", "zero_point"))]:
        missing += [file] if file and not (Path(folder) / file).exists() else []
    if missing:
        raise ArtifactError(f"{folder}: the bundle lacks {missing[0]}; rebuild the bundle")
    return spec


def verify_files(folder: Path) -> None:
    """Every file the bundle's ``manifest.json`` lists against its sha256 (16 ms for the edge bundle's 23 MB here):
    one line naming the first that is missing or differs."""
    try:
        load_artifact(folder, verify=True)
    except ArtifactError as exc:
        raise ArtifactError(f"bundle refused: {exc}".replace("rebuild this step", "rebuild the bundle or copy it "
                                                                                  "again")) from None


class Bundle:
    """Tokenizer + text encoder + generator, loaded once; ``generate`` turns captions into uint8 images.

    ``batch``: compile the generator for this static batch (batch-1 latency: 1); None keeps it dynamic.
    """

    def __init__(self, folder: Path | str, *, threads: int | None = None, batch: int | None = None,
                 hint: str = "none"):
        self.folder = Path(folder)
        self.spec = spec = read_spec(self.folder)
        verify_files(self.folder)  # a damaged or edited file is refused here, not drawn with
        self.tokenizer = load_tokenizer(self.folder / spec["tokenizer"], spec["max_tokens"], spec["pad_token"],
                                        spec.get("pad_to_multiple_of"))
        text, gen = spec["text_encoder"], spec["generator"]
        lookup = text.get("word_embeddings")
        self.word_embeddings = WordEmbeddings(self.folder, lookup) if lookup else None
        self.encoder = _load(self.folder / text["file"], text["backend"], Deployment(threads=threads, hint=hint), True)
        self.generator = _load(self.folder / gen["file"], gen["backend"],
                               Deployment(threads=threads, batch=batch, hint=hint), False)
        self.io = gen["io"]
        self.inputs = list(gen["input_order"])
        self.settings = {"text_encoder": self.encoder.settings, "generator": self.generator.settings}

    @property
    def z_dim(self) -> int:
        return int(self.io["inputs"]["z"]["shape"][1])

    def embed(self, captions: Sequence[str]) -> dict[str, np.ndarray]:
        """The generator's caption inputs: ``text`` (N, 384), plus ``tokens`` and ``token_mask`` if it reads them."""
        captions = check_captions(captions)
        encoded = self.tokenizer.encode_batch(captions)
        ids = np.array([e.ids for e in encoded], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encoded], dtype=np.int64)
        inputs = {"input_ids": ids, "attention_mask": mask}
        if self.word_embeddings is not None:
            inputs[self.word_embeddings.input] = self.word_embeddings(ids)
        pooled, hidden = self.encoder(inputs)
        return generator_text_inputs(self.io, pooled, hidden, mask)

    def __call__(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        """The generator alone on prepared inputs (float images in [-1, 1], NCHW)."""
        return self.generator({name: inputs[name] for name in self.inputs})

    def generate(self, captions: Sequence[str], *, seed: int = 0, z: np.ndarray | None = None) -> np.ndarray:
        """uint8 images (N, S, S, 3), one per caption; noise from ``seed`` unless ``z`` (N, z_dim) is given."""
        captions = check_captions(captions)
        if z is None:
            z = draw_noise(seed, len(captions), self.z_dim)
        elif z.shape != (len(captions), self.z_dim):
            raise ArtifactError(f"z has shape {z.shape}; this bundle needs ({len(captions)}, {self.z_dim})")
        images = self({"z": np.ascontiguousarray(z, dtype=np.float32), **self.embed(captions)})
        return to_uint8(images)

    def generate_grid(self, captions: Sequence[str], *, n: int, seed: int = 0) -> np.ndarray:
        """uint8 (len(captions), n, S, S, 3): sample j of every caption uses the same noise vector."""
        captions = check_captions(captions)
        z = draw_noise(seed, n, self.z_dim)
        images = self.generate([c for c in captions for _ in range(n)], z=np.tile(z, (len(captions), 1)))
        return images.reshape(len(captions), n, *images.shape[1:])


def find_bundle(folder: Path) -> Path | None:
    """``folder`` if it is a bundle (it holds ``bundle.json``), else None; a step artifact of another format
    (ONNX, OpenVINO IR) is refused with the fix, since only a bundle carries its own text encoder."""
    folder = Path(folder)
    if (folder / BUNDLE_FILE).is_file():
        return folder
    manifest = folder / MANIFEST
    if manifest.is_file():
        try:
            kind = json.loads(manifest.read_text()).get("format")
        except (OSError, ValueError, AttributeError):
            kind = None
        if kind not in (None, "torch"):
            raise ArtifactError(f"{folder} is a {kind} artifact, which needs compresskit's text encoder to run; "
                                "end the recipe with a bundle step, or pass a checkpoint or bundle folder")
    return None



def bundle_runtime(folder: Path, deploy: Deployment) -> Runtime:
    """A bundle as a ``Runtime``: calls run its generator on prepared inputs; ``embed`` is its own caption side."""
    bundle = Bundle(folder, threads=deploy.threads, batch=deploy.batch, hint=deploy.hint)
    return Runtime("bundle", deploy.threads, bundle, {"library": "compresskit.runtimes.bundle", **bundle.settings},
                   embed=bundle.embed)
