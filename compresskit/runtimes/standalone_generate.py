"""A bundle's own runner: captions -> one PNG, with numpy, ``tokenizers`` and OpenVINO (or onnxruntime) alone.

The ``bundle`` pass copies this file into every bundle it writes, as ``generate.py``, so a device runs the
bundle without installing compresskit (whose torch, NNCF and transformers weigh ~2 GB)::

    pip install numpy tokenizers openvino          # onnxruntime in place of openvino for an ONNX bundle
    python BUNDLE/generate.py "red apple" --out apple.png [--n 8] [--seed 0]

It draws what ``compresskit generate --model BUNDLE`` draws for the same captions, ``--n`` and ``--seed``, pixel
for pixel: compresskit's bundle runtime (``runtimes.bundle``) imports its steps from this file (tokenizer,
word-embedding lookup, the generator's caption inputs, the noise, the uint8 conversion). The PNG is the grid
of those images at their own size: one row per caption, ``n`` columns, column j drawn from the same noise in
every row (``compresskit generate`` writes the same images upscaled, with labels, through pillow; here zlib
and struct write the PNG, so pillow is not needed).

Before loading anything it checks every file ``manifest.json`` lists against its sha256. Bad input (an empty
caption, ``--n 0``, an ``--out`` that is a folder or cannot be written, a damaged bundle) is one line on stderr
and exit code 2.

This file imports only the standard library, numpy, tokenizers and the runtime the bundle's graphs need; it
must never import compresskit or torch (a test checks it, and runs it in a venv that holds nothing else).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import struct
import sys
import tempfile
import time
import zlib
from collections.abc import Callable, Sequence
from importlib.util import find_spec
from pathlib import Path

try:
    import numpy as np
except ImportError:  # pragma: no cover - the device's install, not compresskit's
    sys.stderr.write("error: this bundle's runner needs numpy: pip install numpy tokenizers openvino\n")
    raise SystemExit(2) from None

BUNDLE_FILE = "bundle.json"
MANIFEST = "manifest.json"
RUNNER_FILE = "generate.py"  # this file's name inside a bundle
READABLE_FORMATS = ("compresskit.bundle/1", "compresskit.bundle/2")
MAX_IMAGES_PER_CAPTION = 64  # as ``compresskit generate --n``
OPENVINO_CONFIG = {"INFERENCE_PRECISION_HINT": "f32"}  # as compresskit's runtimes: no bf16 picked by the CPU


class BundleError(Exception):
    """Bad input or a bad bundle: one line for the user, exit code 2."""


# --- the steps compresskit's bundle runtime shares with this runner -------------------------------------------


def load_tokenizer(path: Path, max_tokens: int, pad_token: str = "[PAD]", pad_to_multiple_of: int | None = None):
    """The tokenizer as the bundle runs it: cut at ``max_tokens``, padded to the batch's longest caption (the
    MiniLM package's file pads every caption to 128 tokens, which would cost the encoder ~8x at batch 1),
    rounded up to ``pad_to_multiple_of`` tokens if given (a single caption too)."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(path))
    tokenizer.enable_truncation(max_tokens)
    tokenizer.enable_padding(pad_id=tokenizer.token_to_id(pad_token), pad_token=pad_token,
                             pad_to_multiple_of=pad_to_multiple_of)
    return tokenizer


class WordEmbeddings:
    """The word-embedding lookup outside the graph: rows of a memory-mapped ``.npy`` table, dequantised as
    the graph did (``(row - zero_point) * scale`` for an INT8 table, in float32); only the rows a caption
    uses are read from disk."""

    def __init__(self, folder: Path, spec: dict):
        self.input = spec["input"]
        try:
            self.table = np.load(folder / spec["table"], mmap_mode="r", allow_pickle=False)
            self.scale = np.load(folder / spec["scale"], allow_pickle=False) if spec.get("scale") else None
            self.zero_point = (np.load(folder / spec["zero_point"], allow_pickle=False)
                               if spec.get("zero_point") else None)
        except (OSError, ValueError) as exc:
            raise BundleError(f"{folder}: the word-embedding table cannot be read ({exc}); rebuild the bundle") from None

    def _rows(self, values: np.ndarray, ids: np.ndarray) -> np.ndarray:
        return values[ids] if values.ndim and values.shape[0] == self.table.shape[0] else values

    def __call__(self, ids: np.ndarray) -> np.ndarray:
        rows = np.asarray(self.table[ids], dtype=np.float32)
        if self.zero_point is not None:
            rows = rows - self._rows(self.zero_point, ids)
        if self.scale is not None:
            rows = rows * self._rows(self.scale, ids)
        return np.ascontiguousarray(rows, dtype=np.float32)


def generator_text_inputs(io: dict, pooled: np.ndarray, hidden: np.ndarray, mask: np.ndarray) -> dict[str, np.ndarray]:
    """A text encoder's outputs (pooled (N, 384), token states (N, L, 384), ids mask (N, L)) as the generator's
    caption inputs: ``text``, plus ``tokens`` and ``token_mask`` zero-padded (or cut) to its fixed length."""
    found = {"text": np.ascontiguousarray(pooled, dtype=np.float32)}
    if "tokens" in io["inputs"]:
        length = int(io["inputs"]["tokens"]["shape"][1])
        tokens = np.zeros((len(pooled), length, hidden.shape[2]), dtype=np.float32)
        token_mask = np.zeros((len(pooled), length), dtype=np.float32)
        n = min(length, hidden.shape[1])
        token_mask[:, :n] = mask[:, :n]
        tokens[:, :n] = hidden[:, :n] * token_mask[:, :n, None]
        found["tokens"], found["token_mask"] = tokens, token_mask
    return found


def draw_noise(seed: int, count: int, z_dim: int) -> np.ndarray:
    """float32 (count, z_dim) noise ~ N(0, 1): numpy's ``default_rng(seed)``, the bundle's one noise source."""
    return np.random.default_rng(seed).standard_normal((count, z_dim)).astype(np.float32)


def to_uint8(images: np.ndarray) -> np.ndarray:
    """Generator output, float NCHW in [-1, 1] -> uint8 NHWC (rounded half to even, as numpy rounds)."""
    return np.round((np.clip(images, -1.0, 1.0) + 1.0) * 127.5).astype(np.uint8).transpose(0, 2, 3, 1)


# --- the bundle folder ----------------------------------------------------------------------------------------


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_manifest(folder: Path) -> dict:
    """The bundle's ``manifest.json`` (its checksums and the versions it was built with), checked."""
    path = folder / MANIFEST
    try:
        manifest = json.loads(path.read_text("utf-8"))
    except FileNotFoundError:
        raise BundleError(f"{folder} has no {MANIFEST}; copy the whole bundle folder, not some of its files") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise BundleError(f"{path} cannot be read ({exc}); copy the bundle again") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), dict):
        raise BundleError(f"{path} lists no files to check; copy the bundle again")
    return manifest


def verify_checksums(folder: Path, manifest: dict) -> None:
    """Every file the manifest lists against its sha256: one line naming the first missing or different one."""
    for name, expected in manifest["files"].items():
        path = folder / name
        if not path.is_file():
            raise BundleError(f"bundle refused: {path} is missing; copy the bundle again")
        if sha256_file(path) != expected:
            raise BundleError(f"bundle refused: {path} does not match its checksum in {MANIFEST} (corrupt or "
                              "replaced); rebuild the bundle or copy it again")


def read_spec(folder: Path) -> dict:
    """``bundle.json``, checked: one line when it is missing or of a format this runner does not know."""
    path = folder / BUNDLE_FILE
    try:
        spec = json.loads(path.read_text("utf-8"))
    except FileNotFoundError:
        raise BundleError(f"{folder} is not a bundle (no {BUNDLE_FILE}); run the generate.py inside a bundle folder, "
                          "or pass one with --bundle") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise BundleError(f"{path} cannot be read ({exc}); copy the bundle again") from None
    if not isinstance(spec, dict) or spec.get("format") not in READABLE_FORMATS:
        raise BundleError(f"{path} is not a bundle this runner reads ({', '.join(READABLE_FORMATS)}); use the "
                          "generate.py that came inside the bundle")
    return spec


def _installed(module: str) -> bool:
    return find_spec(module) is not None


def load_graph(path: Path, backend: str, built_with: dict) -> Callable[[dict[str, np.ndarray]], list[np.ndarray]]:
    """A graph of the bundle as ``inputs -> [outputs]``, set up as compresskit's runtimes set it up (OpenVINO: f32
    inference precision; onnxruntime: CPU, no idle spinning), each with its default thread count. An ONNX graph
    runs in OpenVINO where onnxruntime is missing (its images may then differ from compresskit's by a rounding)."""
    if backend == "onnxruntime" and not _installed("onnxruntime") and _installed("openvino"):
        backend = "openvino"
    if backend not in ("openvino", "onnxruntime"):
        raise BundleError(f"{path}: unknown backend {backend!r} in {BUNDLE_FILE}; one of openvino, onnxruntime")
    if not _installed(backend):
        pin = f"=={built_with[backend]}" if built_with.get(backend, "not installed") != "not installed" else ""
        raise BundleError(f"this bundle runs {path.name} in {backend}, which is not installed: pip install {backend}{pin}")
    try:
        if backend == "openvino":
            import openvino as ov

            compiled = ov.Core().compile_model(str(path), "CPU", OPENVINO_CONFIG)
            request = compiled.create_infer_request()
            dtypes = {port.get_any_name(): port.get_element_type().to_dtype() for port in compiled.inputs}

            def call(inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
                found = request.infer({name: np.ascontiguousarray(inputs[name], dtype=dtypes[name]) for name in dtypes})
                return [found[port].copy() for port in compiled.outputs]

            return call
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        return lambda inputs: session.run(None, inputs)
    except (RuntimeError, ValueError, OSError) as exc:  # the runtime's own parse or compile error, many lines long
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise BundleError(f"{path}: {backend} cannot load it ({first}); rebuild the bundle") from None


class StandaloneBundle:
    """A bundle folder loaded without compresskit: its checksums verified, then tokenizer, text encoder and
    generator; ``generate_grid`` draws as ``compresskit generate`` does."""

    def __init__(self, folder: Path | str):
        self.folder = folder = Path(folder)
        if not (folder / BUNDLE_FILE).is_file():
            raise BundleError(f"{folder} is not a bundle (no {BUNDLE_FILE}); run the generate.py inside a bundle "
                              "folder, or pass one with --bundle")
        manifest = read_manifest(folder)
        verify_checksums(folder, manifest)  # before anything is loaded: a damaged file is refused, not run
        self.spec = spec = read_spec(folder)
        built_with = (manifest.get("producer") or {}).get("versions") or {}
        text, gen = spec["text_encoder"], spec["generator"]
        self.tokenizer = load_tokenizer(folder / spec["tokenizer"], spec["max_tokens"], spec["pad_token"],
                                        spec.get("pad_to_multiple_of"))
        lookup = text.get("word_embeddings")
        self.word_embeddings = WordEmbeddings(folder, lookup) if lookup else None
        self.encoder = load_graph(folder / text["file"], text["backend"], built_with)
        self.generator = load_graph(folder / gen["file"], gen["backend"], built_with)
        self.io = gen["io"]
        self.inputs = list(gen["input_order"])
        self.z_dim = int(self.io["inputs"]["z"]["shape"][1])

    def embed(self, captions: Sequence[str]) -> dict[str, np.ndarray]:
        """The generator's caption inputs: ``text`` (N, 384), plus ``tokens`` and ``token_mask`` if it reads them."""
        encoded = self.tokenizer.encode_batch(list(captions))
        ids = np.array([e.ids for e in encoded], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encoded], dtype=np.int64)
        inputs = {"input_ids": ids, "attention_mask": mask}
        if self.word_embeddings is not None:
            inputs[self.word_embeddings.input] = self.word_embeddings(ids)
        pooled, hidden = self.encoder(inputs)[:2]
        return generator_text_inputs(self.io, pooled, hidden, mask)

    def generate_grid(self, captions: Sequence[str], *, n: int, seed: int = 0) -> np.ndarray:
        """uint8 (len(captions), n, S, S, 3): sample j of every caption uses the same noise vector."""
        z = np.tile(draw_noise(seed, n, self.z_dim), (len(captions), 1))
        inputs = {"z": z, **self.embed([caption for caption in captions for _ in range(n)])}
        images = to_uint8(self.generator({name: inputs[name] for name in self.inputs})[0])
        return images.reshape(len(captions), n, *images.shape[1:])


# --- the image file -------------------------------------------------------------------------------------------


def grid_pixels(images: np.ndarray) -> np.ndarray:
    """uint8 (rows, n, S, S, 3) -> one uint8 (rows * S, n * S, 3) picture, images side by side, no gaps."""
    rows, n, height, width, channels = images.shape
    return images.transpose(0, 2, 1, 3, 4).reshape(rows * height, n * width, channels)


def png_bytes(pixels: np.ndarray) -> bytes:
    """An RGB uint8 (H, W, 3) array as PNG file bytes (8-bit truecolour, no filter, zlib level 9)."""
    height, width, _ = pixels.shape
    scanlines = b"".join(b"\x00" + row.tobytes() for row in np.ascontiguousarray(pixels, dtype=np.uint8))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8 bits, RGB, deflate, no filter, no interlace
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(scanlines, 9))
            + chunk(b"IEND", b""))


def write_png(path: Path, pixels: np.ndarray) -> None:
    """Write the PNG through a temporary file beside it, so a failed write leaves nothing half-written."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(png_bytes(pixels))
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# --- the command line -----------------------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse's usage block + message, as one line
        raise BundleError(f"{message}; see python {self.prog} --help")


def _parser() -> argparse.ArgumentParser:
    here = Path(__file__).resolve().parent
    parser = _Parser(prog=RUNNER_FILE, description="Draw images for captions with this bundle (no compresskit "
                                                   "needed: numpy, tokenizers and openvino or onnxruntime).")
    parser.add_argument("captions", nargs="+", metavar="CAPTION", help="one or more captions (one grid row each)")
    parser.add_argument("-o", "--out", "--output", dest="out", type=Path, default=Path("grid.png"),
                        help="PNG to write (default: grid.png)")
    parser.add_argument("--n", type=int, default=8, help="images per caption, 1-64 (default: 8)")
    parser.add_argument("--seed", type=int, default=0,
                        help="noise seed; column j uses the same noise in every row (default: 0)")
    parser.add_argument("--bundle", type=Path, default=here, help="the bundle folder (default: this file's folder)")
    return parser


def check_captions(captions: Sequence[str]) -> list[str]:
    """One line for an empty or blank caption, or one that is not UTF-8 text."""
    for i, caption in enumerate(captions):
        if not caption.strip():
            raise BundleError(f"caption {i} is empty; every caption needs some text")
        try:
            caption.encode("utf-8")
        except UnicodeEncodeError:  # bytes that were not UTF-8 (a shell passes them as lone surrogates)
            raw = caption.encode("utf-8", "surrogateescape")[:80]
            raise BundleError(f"caption {i} ({raw!r}) is not valid UTF-8 text; pass captions as UTF-8") from None
    return list(captions)


def check_out(out: Path) -> None:
    """``--out`` must be a file name in a folder that exists or can be made (made here, as compresskit does)."""
    if out.is_dir():
        raise BundleError(f"--out {out} is a folder; give the image's file name, like {out / 'grid.png'}")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BundleError(f"cannot write {out} ({exc.strerror or exc}); choose a path in a folder you can write") from None


def run(argv: Sequence[str] | None = None) -> str:
    """Parse ``argv``, draw, write the PNG; returns the line to print. BundleError for bad input or a bad bundle."""
    args = _parser().parse_args(argv)
    captions = check_captions(args.captions)
    if not 1 <= args.n <= MAX_IMAGES_PER_CAPTION:
        raise BundleError(f"--n {args.n}: give 1 to {MAX_IMAGES_PER_CAPTION} images per caption")
    if args.seed < 0:
        raise BundleError(f"--seed {args.seed}: give a seed of 0 or more")
    check_out(args.out)
    started = time.perf_counter()
    images = StandaloneBundle(args.bundle).generate_grid(captions, n=args.n, seed=args.seed)
    seconds = time.perf_counter() - started
    try:
        write_png(args.out, grid_pixels(images))
    except OSError as exc:
        raise BundleError(f"cannot write {args.out} ({exc.strerror or exc}); choose a path in a folder you can "
                          "write") from None
    return (f"wrote {args.out}: {len(captions)} caption(s) x {args.n} at {images.shape[2]} px ({seconds:.2f} s, "
            f"seed {args.seed})")


def main(argv: Sequence[str] | None = None) -> int:
    """The script's entry point: 0 when the PNG is written; 2 with one ``error:`` line on stderr otherwise."""
    try:
        message = run(argv)
    except BundleError as exc:
        sys.stderr.write(f"error: {' '.join(str(exc).split())}\n")
        return 2
    sys.stderr.write(message + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
