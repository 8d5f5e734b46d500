"""A pass from another package: built into a wheel, installed with pip, found through the entry point.

The plugin package is one file plus one entry-point line: what adding a pass costs a third party.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest
import torch

from compresskit.models import create_generator, save_model

PLUGIN = textwrap.dedent('''
    """A third-party pass: round every weight to a number of decimals (torch -> torch)."""
    from pathlib import Path

    import torch
    from pydantic import Field

    from compresskit.artifact import Format
    from compresskit.models import load_model, save_model
    from compresskit.passes.base import Pass, PassConfig, PassMetric, PassResult


    class RoundConfig(PassConfig):
        decimals: int = Field(2, ge=0, le=8)


    class RoundWeights(Pass):
        name = "round_weights"
        about = "round every weight to `decimals` decimals (a demo plugin)"
        Config = RoundConfig
        accepts = (Format.TORCH,)
        produces = Format.TORCH
        needs = ("captions",)
        metrics = {"max_weight_change": PassMetric("", "lower", "largest |rounded - original| weight")}

        def run(self, src, out_dir: Path, ctx) -> PassResult:
            model = load_model(src.path)
            change = 0.0
            with torch.no_grad():
                for p in model.parameters():
                    rounded = torch.round(p, decimals=self.config.decimals)
                    change = max(change, float((rounded - p).abs().max()))
                    p.copy_(rounded)
            save_model(out_dir, model)
            return PassResult(metrics={"max_weight_change": change}, details={"first_caption": ctx.captions(1)[0]})
''')


def _wheel(folder: Path) -> Path:
    """A minimal wheel (PEP 427) holding the plugin module and its entry point."""
    dist = "ck_plugin_demo-0.1.dist-info"
    files = {
        "ck_plugin_demo/__init__.py": "",
        "ck_plugin_demo/round_weights.py": PLUGIN,
        f"{dist}/METADATA": "Metadata-Version: 2.1\nName: ck-plugin-demo\nVersion: 0.1\n",
        f"{dist}/WHEEL": "Wheel-Version: 1.0\nGenerator: compresskit-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        f"{dist}/entry_points.txt": "[compresskit.passes]\nround_weights = ck_plugin_demo.round_weights:RoundWeights\n",
    }
    record = []
    for name, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        record.append(f"{name},sha256={digest},{len(text.encode())}")
    files[f"{dist}/RECORD"] = "\n".join([*record, f"{dist}/RECORD,,"]) + "\n"
    path = folder / "ck_plugin_demo-0.1-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as wheel:
        for name, text in files.items():
            wheel.writestr(name, text)
    return path


@pytest.fixture(scope="module")
def plugin_site(tmp_path_factory) -> Path:
    """The plugin installed by pip (offline, no build step) into its own site folder."""
    root = tmp_path_factory.mktemp("plugin")
    site = root / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "--quiet", "--target", str(site),
                    str(_wheel(root))], check=True, capture_output=True, timeout=300)
    return site


def _cli(site: Path, *args: str) -> subprocess.CompletedProcess:
    path = os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])
    return subprocess.run([sys.executable, "-m", "compresskit", *args], capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHONPATH": path, "COLUMNS": "250"})


def test_an_installed_plugin_pass_is_listed_and_runs_by_name_in_a_recipe(plugin_site, tmp_path):
    listed = _cli(plugin_site, "passes", "--json")
    assert listed.returncode == 0, listed.stderr
    row = next(r for r in json.loads(listed.stdout) if r["name"] == "round_weights")
    assert row["from"] == "ck-plugin-demo" and row["metrics"] == ["max_weight_change"] and row["needs"] == ["captions"]

    torch.manual_seed(0)
    model = save_model(tmp_path / "g", create_generator(ngf=4, text_hidden=16, fuse_hidden=8),
                       {"data": {"name": "shapes", "n": 600, "seed": 5}})
    recipe = tmp_path / "r.yaml"
    recipe.write_text(json.dumps({"input": {"model": str(model)}, "steps": [
        {"round_weights": {"decimals": 1}}, {"export_onnx": {}}]}))
    done = _cli(plugin_site, "run", str(recipe), "--out", str(tmp_path / "run"), "--no-bench")
    assert done.returncode == 0, done.stderr + done.stdout
    steps = json.loads((tmp_path / "run" / "run.json").read_text())["steps"]
    assert 0 < steps[0]["meta"]["max_weight_change"] <= 0.05
    assert steps[0]["meta"]["first_caption"]  # a caption of the model's own dataset, through the context
    manifest = json.loads(next((tmp_path / "run" / "artifacts").glob("01-round_weights-*/manifest.json")).read_text())
    assert manifest["dataset"]["name"] == "shapes", "the runner carried the dataset; the plugin never touched it"
    assert [s["pass"] for s in manifest["lineage"]] == ["input", "round_weights"]

    bad = tmp_path / "bad.yaml"
    bad.write_text(json.dumps({"input": {"model": str(model)}, "steps": [{"round_weights": {"decimal": 1}}]}))
    refused = _cli(plugin_site, "run", str(bad), "--out", str(tmp_path / "bad"))
    assert refused.returncode == 2 and "decimal" in refused.stderr and "decimals" in refused.stderr


def test_without_the_plugin_the_name_is_unknown(tmp_path):
    from compresskit.errors import RecipeError
    from compresskit.recipe import parse_recipe

    with pytest.raises(RecipeError, match="unknown pass 'round_weights'"):
        parse_recipe({"input": {"model": "emoji32-tiny"}, "steps": [{"round_weights": {}}]}, "r.yaml")
