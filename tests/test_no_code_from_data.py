"""No code from data: the package never unpickles. A scan of every module's syntax tree, so a new
``torch.load`` without ``weights_only=True`` (or a pickle, an unsafe YAML or numpy load) fails here."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "compresskit"
MODULES = sorted(PACKAGE.rglob("*.py"))


def _call_name(node: ast.Call) -> str:
    parts, target = [], node.func
    while isinstance(target, ast.Attribute):
        parts.append(target.attr)
        target = target.value
    parts.append(target.id if isinstance(target, ast.Name) else "<expr>")  # f().eval() is a method, not eval
    return ".".join(reversed(parts))


def _keyword(node: ast.Call, name: str):
    for kw in node.keywords:
        if kw.arg == name:
            return kw.value.value if isinstance(kw.value, ast.Constant) else "<expr>"
    return None


def unsafe_calls(source: str) -> list[str]:
    """Every call in ``source`` that could run code from a file: a reason per offending line."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import | ast.ImportFrom):
            names = [a.name for a in node.names] + ([node.module] if isinstance(node, ast.ImportFrom) else [])
            if any(n and n.split(".")[0] in ("pickle", "dill", "cloudpickle", "marshal", "shelve") for n in names):
                found.append(f"line {node.lineno}: imports a pickle module")
        if not isinstance(node, ast.Call):
            continue
        name = _call_name(node)
        if name.endswith("torch.load") and _keyword(node, "weights_only") is not True:
            found.append(f"line {node.lineno}: torch.load without weights_only=True")
        if name in ("np.load", "numpy.load") and _keyword(node, "allow_pickle") is not False:
            found.append(f"line {node.lineno}: np.load without allow_pickle=False")
        if name in ("yaml.load", "yaml.unsafe_load", "yaml.full_load"):
            found.append(f"line {node.lineno}: {name} (use yaml.safe_load)")
        if name.endswith("from_pretrained") and "Tokenizer" not in name and _keyword(node, "use_safetensors") is not True:
            found.append(f"line {node.lineno}: {name} may read a pickled .bin (pass use_safetensors=True)")
        if name in ("eval", "exec"):
            found.append(f"line {node.lineno}: {name}()")
    return found


@pytest.mark.parametrize("module", MODULES, ids=[str(m.relative_to(PACKAGE)) for m in MODULES])
def test_module_never_loads_code_from_data(module):
    assert unsafe_calls(module.read_text("utf-8")) == []


def test_the_scan_catches_each_unsafe_form():
    bad = """
import pickle
torch.load(path)
torch.load(path, weights_only=False)
np.load(path)
yaml.load(text)
AutoModel.from_pretrained(folder)
"""
    assert len(unsafe_calls(bad)) == 6
    good = """
torch.load(path, map_location="cpu", weights_only=True)
np.load(path, allow_pickle=False)
yaml.safe_load(text)
AutoModel.from_pretrained(folder, use_safetensors=True)
"""
    assert unsafe_calls(good) == []
