"""README's commands cannot rot: its Python quickstart runs as written, its test command is what CI runs, and
every recipe and pass it names exists."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")


def _section(title: str) -> str:
    start = README.index(f"\n## {title}\n")
    end = README.find("\n## ", start + 1)
    return README[start:end if end > 0 else None]


def _blocks(text: str, lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", text, flags=re.S)


def test_readme_is_short_and_starts_with_the_two_commands():
    assert len(README.splitlines()) <= 250
    first, second = _blocks(README, "bash")[:2]
    assert "compresskit run recipes/edge-openvino-int8.yaml" in first and first.startswith("python3 -m venv .venv")
    ci = (ROOT / ".ci" / "run").read_text()
    setup, test = second.strip().split(" && ", 1)[1].split(" && ")
    assert setup in ci and test in ci, "CI installs and tests exactly as README's second command says"


def test_every_recipe_and_pass_readme_names_exists():
    from compresskit.registry import all_passes

    for path in set(re.findall(r"recipes/[\w./-]+\.yaml", README)):
        assert (ROOT / path).is_file(), path
    table = _section("Passes")
    named = re.findall(r"^\| `(\w+)` \|", table, flags=re.M)
    built_in = {name for name, where in all_passes().items() if where.startswith("compresskit.passes.")}
    assert set(named) == built_in, "the pass table lists every built-in pass, and only those"


@pytest.mark.slow
def test_the_python_quickstart_runs_as_written(tmp_path):
    (code,) = _blocks(_section("Quickstart in Python"), "python")
    (tmp_path / "recipes").symlink_to(ROOT / "recipes")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, env=env,
                          timeout=1800)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "| candidate |" in done.stdout and re.search(r"^(pass|fail|no gates) \[", done.stdout, flags=re.M)
    assert (tmp_path / "runs" / "smoke" / "report.json").is_file()
    assert (tmp_path / "runs" / "mine" / "run.json").is_file()
