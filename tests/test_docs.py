"""The API reference builds without a pdoc warning and documents the public API (``python -m compresskit.docs OUT``)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
def _make(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "compresskit.docs", *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=300)


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    pytest.importorskip("pdoc")
    out = tmp_path_factory.mktemp("docs-site")
    result = _make(str(out))
    assert result.returncode == 0, result.stderr  # any pdoc warning fails the build, listed on stderr
    assert "error" not in result.stderr
    return out


def test_the_top_level_page_documents_the_public_api(site):
    page = (site / "compresskit.html").read_text("utf-8")
    documented = set(re.findall(r'<section id="([A-Za-z_]\w*)">', page))
    assert {"run", "compress", "measure", "gate", "Report", "Event"} <= documented
    assert {"load_model", "CompresskitError"} <= documented


def test_every_public_module_has_a_page(site):
    modules = {p.relative_to(ROOT).with_suffix("").as_posix().removesuffix("/__init__").replace("/", ".")
               for p in (ROOT / "compresskit").rglob("*.py") if "zoo" not in p.parts}
    public = {m for m in modules if not any(part.startswith("_") for part in m.split("."))}
    pages = {p.relative_to(site).with_suffix("").as_posix().replace("/", ".") for p in site.rglob("*.html")}
    assert public - pages == set()
    assert (site / "index.html").is_file()


def test_bad_arguments_are_one_line_and_exit_2(tmp_path):
    a_file = tmp_path / "site.html"
    a_file.write_text("x")
    result = _make(str(a_file))
    assert result.returncode == 2 and result.stderr.strip() == f"error: {a_file} is a file; give a folder for the site"
    result = _make("a", "b")
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
