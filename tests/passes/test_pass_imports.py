"""Passes reach the rest of the package through PassContext and shared helpers, never through another pass:
no module under compresskit/passes imports a pass module (one the registry names) other than itself; and the
typed model contract (``models.contract.Generator``) is what every generator offers."""

from __future__ import annotations

import ast
from pathlib import Path

import compresskit.passes
from compresskit.registry import PASSES

PASSES_DIR = Path(compresskit.passes.__file__).parent
PASS_MODULES = {value.split(":")[0] for value in PASSES.values()}  # compresskit.passes.distill, ...


def imported_modules(path: Path) -> set[str]:
    """Every module ``path`` imports, anywhere in the file (function-local imports too), as absolute names."""
    package = "compresskit.passes"
    found = set()
    for node in ast.walk(ast.parse(path.read_text("utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from .x import y / from . import x / from ..models import z
                parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{parent}.{base}" if base else parent
            found.add(base)
            found |= {f"{base}.{alias.name}" for alias in node.names}  # from . import bundle
    return found


def test_no_module_under_passes_imports_a_pass_module_but_its_own():
    offenders = []
    for path in sorted(PASSES_DIR.glob("*.py")):
        own = f"compresskit.passes.{path.stem}"
        for module in sorted((imported_modules(path) & PASS_MODULES) - {own}):
            offenders.append(f"{path.name} imports {module}")
    assert not offenders, ("a pass reaches another pass; take what it needs from PassContext, a shared helper under "
                           "passes/ (base, students, calibration, parity, distill_config) or compresskit.text / "
                           f"compresskit.runtimes: {offenders}")


def test_the_import_check_sees_relative_absolute_and_function_local_imports(tmp_path):
    source = tmp_path / "probe.py"
    source.write_text("from .bundle import x\nimport compresskit.passes.prune\n"
                      "def f():\n    from . import distill\n    from ..models import io\n")
    assert {"compresskit.passes.bundle", "compresskit.passes.prune", "compresskit.passes.distill",
            "compresskit.models"} <= imported_modules(source)
    assert "compresskit.models.io" in imported_modules(source)


def test_every_generator_form_is_a_generator_of_the_model_contract():
    import torch

    from compresskit.models import create_generator
    from compresskit.models.contract import Generator, io_spec
    from compresskit.models.user import FactorySpec, build
    from compresskit.passes.distill_config import StudentConfig
    from compresskit.passes.students import make_student

    torch.manual_seed(0)
    teacher = create_generator(ngf=4, text_hidden=16, fuse_hidden=8)
    teacher.meta = {}
    student = make_student(StudentConfig(kind="slim", width=0.5), None, teacher)  # ours, built for a teacher
    users = build(FactorySpec(factory="tests.passes.user_generators:dcgan", kwargs={"z_dim": 16, "width": 8}, z_dim=16))
    for model in (teacher, student, users.eval()):
        assert isinstance(model, Generator)
        z, text = torch.randn(2, model.config.z_dim), torch.randn(2, model.config.text_dim)
        assert model(z, text).shape == (2, 3, model.config.image_size, model.config.image_size)
        assert list(io_spec(model)["inputs"]) == ["z", "text"]
    assert not isinstance(torch.nn.Linear(2, 2), Generator), "a module without a generator's config is not one"
