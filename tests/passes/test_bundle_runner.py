"""The bundle's own runner (``generate.py``, from ``runtimes.standalone_generate``): a device draws what
``compresskit generate --model BUNDLE`` draws with numpy, tokenizers and openvino alone."""

from __future__ import annotations

import ast
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from importlib.metadata import version
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from platformdirs import user_cache_dir

from compresskit.cache import CACHE_ENV
from compresskit.recipe import parse_recipe
from compresskit.runner import run
from compresskit.runtimes import standalone_generate
from compresskit.runtimes.bundle import Bundle
from compresskit.runtimes.standalone_generate import (
    RUNNER_FILE,
    grid_pixels,
    main,
    png_bytes,
)
from tests.helpers import run_cli
from tests.passes.conftest import recipe_dict

DEVICE_PACKAGES = ("numpy", "tokenizers", "openvino")  # all a device installs for an OpenVINO bundle
NOT_ON_THE_DEVICE = ("torch", "compresskit", "transformers", "nncf", "onnx", "PIL", "pydantic", "typer")
# read when pytest collects this file, before conftest points COMPRESSKIT_CACHE at a throw-away folder: the
# device venv (~320 MB, a pip install) is kept in the user's own compresskit cache, so a rerun reuses it
USER_CACHE = os.environ.get(CACHE_ENV)


def _build(tiny_generator_dir: Path, out: Path, *steps: dict) -> Path:
    return run(parse_recipe(recipe_dict(tiny_generator_dir, *steps), "r.yaml"), out).final.path


@pytest.fixture(scope="module")
def bundle_dir(tiny_generator_dir, tmp_path_factory) -> Path:
    """An OpenVINO bundle of the tiny generator (fp32 MiniLM, word embeddings in .npy files)."""
    steps = [{"export_onnx": {}}, {"export_openvino": {}}, {"bundle": {"validation_size": 8}}]
    return _build(tiny_generator_dir, tmp_path_factory.mktemp("bundle") / "run", *steps)


def _png_pixels(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def _cli_grid_images(grid: Path, n: int, rows: int, size: int = 32) -> np.ndarray:
    """The images of a ``compresskit generate`` grid, uint8 (rows, n, size, size, 3): its tiles (``grid.labelled_grid``
    with tile_px 64: cells 72 px wide, tiles 4 px in, 64 + 6 + 2 * 13 px tall) upscaled 2x nearest, so every
    second pixel is the image's own."""
    pixels = _png_pixels(grid)
    tile, cell_w, cell_h = 64, 72, 64 + 6 + 2 * 13
    return np.stack([np.stack([pixels[r * cell_h + 4:r * cell_h + 4 + tile:2, j * cell_w + 4:j * cell_w + 4 + tile:2]
                               for j in range(n)]) for r in range(rows)]).reshape(rows, n, size, size, 3)


def _run_main(capsys, *argv: str) -> tuple[int, list[str]]:
    code = main(list(argv))
    return code, capsys.readouterr().err.splitlines()


# --- fast: the runner alone ------------------------------------------------------------------------------------


def test_the_runner_imports_only_the_standard_library_numpy_tokenizers_and_a_runtime():
    tree = ast.parse(Path(standalone_generate.__file__).read_text())
    imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree)
                 if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module}
    assert not any(isinstance(node, ast.ImportFrom) and node.level for node in ast.walk(tree)), "no relative imports"
    outside = imported - set(sys.stdlib_module_names) - {"numpy", "tokenizers", "openvino", "onnxruntime"}
    assert outside == set(), f"the bundle's runner must not need {sorted(outside)}"


def test_the_png_writer_writes_what_pillow_reads_back():
    images = np.random.default_rng(0).integers(0, 256, (2, 3, 5, 5, 3), dtype=np.uint8)  # 2 captions x 3 samples
    pixels = grid_pixels(images)
    assert pixels.shape == (10, 15, 3)
    assert np.array_equal(pixels[5:10, 10:15], images[1, 2]), "row = caption, column = sample"
    decoded = np.asarray(Image.open(io.BytesIO(png_bytes(pixels))))
    assert decoded.dtype == np.uint8 and np.array_equal(decoded, pixels)


@pytest.fixture
def fake_bundle(tmp_path) -> Path:
    """A folder with a manifest and two listed files: enough to reach the checksum check (no model needed)."""
    folder = tmp_path / "bundle"
    folder.mkdir()
    files = {"bundle.json": b'{"format": "compresskit.bundle/2"}', "generator.bin": b"\x00" * 64}
    for name, data in files.items():
        (folder / name).write_bytes(data)
    manifest = {"files": {name: hashlib.sha256(data).hexdigest() for name, data in files.items()}}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


@pytest.mark.parametrize(("damage", "expected"), [
    ("edit", "generator.bin does not match its checksum in manifest.json (corrupt or replaced); rebuild the bundle"),
    ("delete", "generator.bin is missing; copy the bundle again"),
    ("no manifest.json", "has no manifest.json; copy the whole bundle folder"),
    ("no bundle.json", "is not a bundle (no bundle.json); run the generate.py inside a bundle folder"),
])
def test_a_damaged_bundle_is_refused_in_one_line_before_anything_loads(fake_bundle, tmp_path, capsys, damage,
                                                                         expected):
    if damage == "edit":
        (fake_bundle / "generator.bin").write_bytes(b"\x01" * 64)
    elif damage == "delete":
        (fake_bundle / "generator.bin").unlink()
    else:
        (fake_bundle / damage.split()[-1]).unlink()
    out = tmp_path / "x.png"
    code, lines = _run_main(capsys, "red apple", "--bundle", str(fake_bundle), "--out", str(out))
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], lines
    assert not out.exists()


@pytest.mark.parametrize(("argv", "expected"), [
    (["  "], "error: caption 0 is empty; every caption needs some text"),
    (["red apple", ""], "error: caption 1 is empty"),
    (["red apple", "--n", "0"], "error: --n 0: give 1 to 64 images per caption"),
    (["red apple", "--n", "65"], "error: --n 65: give 1 to 64 images per caption"),
    (["red apple", "--n", "two"], "error: argument --n: invalid int value: 'two'; see python generate.py --help"),
    (["red apple", "--seed", "-1"], "error: --seed -1: give a seed of 0 or more"),
    ([], "error: the following arguments are required: CAPTION"),
])
def test_bad_arguments_are_one_line_and_exit_2(fake_bundle, capsys, argv, expected):
    code, lines = _run_main(capsys, *argv, "--bundle", str(fake_bundle))
    assert code == 2 and len(lines) == 1 and lines[0].startswith(expected), lines


def test_an_out_that_is_a_folder_or_cannot_be_written_is_one_line_and_exit_2(fake_bundle, tmp_path, capsys):
    code, lines = _run_main(capsys, "red apple", "--bundle", str(fake_bundle), "--out", str(tmp_path))
    folder_line = f"error: --out {tmp_path} is a folder; give the image's file name, like {tmp_path / 'grid.png'}"
    assert code == 2 and lines == [folder_line]
    blocked = fake_bundle / "generator.bin" / "x.png"  # its parent is a file
    code, lines = _run_main(capsys, "red apple", "--bundle", str(fake_bundle), "--out", str(blocked))
    assert code == 2 and len(lines) == 1 and lines[0].startswith(f"error: cannot write {blocked} (")
    assert lines[0].endswith("choose a path in a folder you can write")


# --- a real bundle, in this venv ---------------------------------------------------------------------------------


def test_the_bundle_ships_the_runner_checksummed_and_it_draws_what_compresskit_draws(bundle_dir, tmp_path):
    runner = bundle_dir / RUNNER_FILE
    assert runner.read_bytes() == Path(standalone_generate.__file__).read_bytes()
    manifest = json.loads((bundle_dir / "manifest.json").read_text())
    assert manifest["files"][RUNNER_FILE] == hashlib.sha256(runner.read_bytes()).hexdigest()
    out = tmp_path / "sub" / "two.png"
    done = subprocess.run([sys.executable, str(runner), "red apple", "cat face", "--n", "3", "--seed", "5",
                           "--out", str(out)], check=False, capture_output=True, text=True, timeout=300,
                           cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stderr.startswith(f"wrote {out}: 2 caption(s) x 3 at 32 px")
    expected = Bundle(bundle_dir).generate_grid(["red apple", "cat face"], n=3, seed=5)
    assert np.array_equal(_png_pixels(out), grid_pixels(expected)), "the same pixels as compresskit's runtime"
    assert not np.array_equal(expected[0, 0], expected[0, 1]), "each column its own noise"


def test_the_runner_refuses_a_bundle_whose_generator_was_edited(bundle_dir, tmp_path):
    copy = tmp_path / "bundle"
    shutil.copytree(bundle_dir, copy)
    with open(copy / "generator.bin", "r+b") as fh:
        fh.seek(100)
        fh.write(b"\xff\xff\xff\xff")
    done = subprocess.run([sys.executable, str(copy / RUNNER_FILE), "red apple", "--out", str(tmp_path / "x.png")],
                          check=False, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and done.stderr.count("\n") == 1
    assert done.stderr.startswith(f"error: bundle refused: {copy / 'generator.bin'} does not match its checksum")
    assert not (tmp_path / "x.png").exists()


@pytest.mark.slow
def test_an_onnx_bundle_runs_in_onnxruntime_or_else_openvino_and_draws_what_compresskit_draws(tiny_generator_dir,
                                                                                             tmp_path, monkeypatch):
    folder = _build(tiny_generator_dir, tmp_path / "run", {"export_onnx": {}}, {"bundle": {"validation_size": 8}})
    assert json.loads((folder / "bundle.json").read_text())["generator"]["backend"] == "onnxruntime"
    assert main(["cat face", "--n", "2", "--seed", "1", "--bundle", str(folder), "--out", str(tmp_path / "c.png")]) == 0
    expected = Bundle(folder).generate_grid(["cat face"], n=2, seed=1)
    assert np.array_equal(_png_pixels(tmp_path / "c.png"), grid_pixels(expected))
    monkeypatch.setattr(standalone_generate, "_installed", lambda module: module != "onnxruntime")
    in_openvino = standalone_generate.StandaloneBundle(folder).generate_grid(["cat face"], n=2, seed=1)
    assert np.abs(in_openvino.astype(int) - expected).max() <= 1, "a device without onnxruntime: OpenVINO reads ONNX"


# --- the device: a fresh venv with numpy, tokenizers and openvino only -------------------------------------------


def _site_packages(venv: Path) -> Path:
    return next((venv / "lib").glob("python3*/site-packages"))


def device_venv() -> Path:
    """A venv with only DEVICE_PACKAGES (and what they pull in), pinned to this venv's versions so pip can reuse
    its cache; built once per Python and versions (into a temporary sibling, then renamed) and kept."""
    pins = [f"{name}=={version(name)}" for name in DEVICE_PACKAGES]
    key = f"py{sys.version_info.major}{sys.version_info.minor}-" + "-".join(pin.replace("==", "") for pin in pins)
    root = Path(USER_CACHE or user_cache_dir("compresskit", appauthor=False))  # as compresskit.cache.cache_root
    final = root / "test-device-venvs" / key
    if (final / "ready").is_file():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{key}.", suffix=".tmp", dir=final.parent))
    try:
        # no system site packages (venv's default); the interpreter is this venv's base Python
        subprocess.run([sys.executable, "-m", "venv", str(tmp)], check=True, capture_output=True, timeout=300)
        pip = subprocess.run([str(tmp / "bin" / "python"), "-m", "pip", "install", "--quiet",
                              "--disable-pip-version-check", *pins], check=False, capture_output=True, text=True,
                             timeout=900)
        assert pip.returncode == 0, f"pip install {' '.join(pins)} failed: {pip.stderr[-1500:]}"
        (tmp / "ready").write_text(" ".join(pins) + "\n")
        if not (final / "ready").is_file():  # else another session finished first: keep its venv
            shutil.rmtree(final, ignore_errors=True)  # a half-built one
            os.replace(tmp, final)  # the venv's python finds its pyvenv.cfg beside it: a renamed venv works
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


@pytest.mark.slow
def test_a_device_with_only_numpy_tokenizers_and_openvino_draws_the_pixels_compresskit_generate_draws(bundle_dir,
                                                                                                     tmp_path):
    started = time.perf_counter()
    venv = device_venv()
    python = venv / "bin" / "python"
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path)}  # no PYTHONPATH, no repo on path
    probe = ("import importlib.util, json, sys\n"
             f"print(json.dumps({{m: importlib.util.find_spec(m) is not None for m in "
             f"{[*DEVICE_PACKAGES, *NOT_ON_THE_DEVICE]!r}}}), sys.prefix != sys.base_prefix)")
    found = subprocess.run([str(python), "-c", probe], check=False, capture_output=True, text=True, env=env,
                           cwd=tmp_path, timeout=120)
    importable, in_venv = found.stdout.rsplit(" ", 1)
    assert in_venv.strip() == "True" and json.loads(importable) == {
        **dict.fromkeys(DEVICE_PACKAGES, True), **dict.fromkeys(NOT_ON_THE_DEVICE, False)}
    site = _site_packages(venv)
    assert not list(site.glob("torch*")), "no torch in the device's venv"
    size_mib = sum(p.stat().st_size for p in site.rglob("*") if p.is_file() and not p.is_symlink()) / 2**20
    assert size_mib < 512, f"the device install weighs {size_mib:.0f} MiB"  # compresskit's own venv: ~2 GB

    device = tmp_path / "device" / "bundle"
    shutil.copytree(bundle_dir, device)  # copied as a user copies it to the device
    done = subprocess.run([str(python), str(device / RUNNER_FILE), "red apple", "--out", "x.png", "--seed", "3"],
                          check=False, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr
    grid = tmp_path / "grid.png"
    cli = run_cli("generate", "red apple", "--model", str(bundle_dir), "--seed", "3", "-o", str(grid))
    assert cli.returncode == 0, cli.stderr
    drawn = _png_pixels(tmp_path / "x.png")
    assert drawn.shape == (32, 8 * 32, 3), "one row, compresskit generate's 8 images per caption"
    assert np.array_equal(drawn, grid_pixels(_cli_grid_images(grid, n=8, rows=1))), "the same pixels"
    print(f"device venv {venv.name}: {size_mib:.0f} MiB of site-packages; test {time.perf_counter() - started:.1f} s")


def test_a_bundle_of_a_format_this_runner_does_not_know_is_refused_in_one_line(fake_bundle, tmp_path, capsys):
    spec = b'{"format": "compresskit.bundle/99"}'  # a newer bundle, checksums intact: only the format is unknown
    (fake_bundle / "bundle.json").write_bytes(spec)
    manifest = json.loads((fake_bundle / "manifest.json").read_text())
    manifest["files"]["bundle.json"] = hashlib.sha256(spec).hexdigest()
    (fake_bundle / "manifest.json").write_text(json.dumps(manifest))
    out = tmp_path / "x.png"
    code, lines = _run_main(capsys, "red apple", "--bundle", str(fake_bundle), "--out", str(out))
    assert code == 2 and len(lines) == 1 and "is not a bundle this runner reads (compresskit.bundle/1" in lines[0], lines
    assert not out.exists()


def test_a_caption_that_is_not_utf8_is_refused_in_one_line_naming_it(fake_bundle, capsys):
    caption = b"red \xff\xfe apple".decode("utf-8", "surrogateescape")  # what a shell hands Python for such bytes
    code, lines = _run_main(capsys, caption, "--bundle", str(fake_bundle))
    assert code == 2 and len(lines) == 1, lines
    assert lines[0].startswith("error: caption 0 (b'red \\xff\\xfe apple') is not valid UTF-8 text"), lines
