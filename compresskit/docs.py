"""Build the API reference (HTML, pdoc) of compresskit: ``python -m compresskit.docs [OUT]`` (default ``docs-site/``).

The site documents the top-level package (the flat public API) and every subpackage and module below it.
compresskit imports its public names on first use (a module ``__getattr__``), which pdoc does not follow, so
they are resolved here before pdoc reads the package. A warning from pdoc (a name in ``__all__`` that does
not resolve, a module that fails to import) fails the build: each is printed on one line and the exit code
is 1, so the reference never ships with silent holes.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
import warnings
from pathlib import Path

PACKAGE = "compresskit"
LAZY_PACKAGES = ("compresskit", "compresskit.text")  # modules whose ``__all__`` names load on first use
DEFAULT_OUT = Path("docs-site")


def resolve_lazy_names(module_name: str) -> None:
    """Put every name of the module's ``__all__`` into its namespace, where pdoc looks for it."""
    module = importlib.import_module(module_name)
    for name in module.__all__:
        vars(module).setdefault(name, getattr(module, name))


def documented_modules() -> list[str]:
    """pdoc's module specs for the whole package: the package itself, then each public module that pdoc's walk
    does not reach (it follows a package's ``__all__``, which names only the public API, not every module)."""
    import pdoc.extract  # optional (the test extra): only building the reference needs it

    package = importlib.import_module(PACKAGE)
    public = [m.name for m in pkgutil.walk_packages(package.__path__, f"{PACKAGE}.")
              if not any(part.startswith("_") for part in m.name.split("."))]
    specs, reached = [PACKAGE], set(pdoc.extract.walk_specs([PACKAGE]))
    for name in public:  # parents come before their children, so a spec's walk covers what it can
        if name not in reached:
            specs.append(name)
            reached.update(pdoc.extract.walk_specs([name]))
    return specs


def build(out: Path) -> list[str]:
    """Write the site into ``out``; returns pdoc's warnings (empty when the reference is complete)."""
    import pdoc  # optional (the test extra): only building the reference needs it

    pdoc_dir = str(Path(pdoc.__file__).resolve().parent)
    with warnings.catch_warnings(record=True) as caught:  # pdoc warns through the warnings module
        warnings.simplefilter("always")
        for name in LAZY_PACKAGES:
            resolve_lazy_names(name)
        pdoc.pdoc(*documented_modules(), output_directory=out)
    return [" ".join(str(w.message).split()) for w in caught if str(Path(w.filename).resolve()).startswith(pdoc_dir)]


def main(argv: list[str]) -> int:
    """Build into ``argv[0]`` (or ``docs-site``): 0 when complete, 1 with pdoc's problems, 2 on bad arguments."""
    if len(argv) > 1 or (argv and argv[0].startswith("-")):
        print("error: usage: python -m compresskit.docs [OUT_FOLDER]  (default docs-site)", file=sys.stderr)
        return 2
    try:
        import pdoc  # noqa: F401  (optional: checked here so a missing install is one line)
    except ImportError:
        print("error: pdoc is not installed; pip install -e '.[test]' (or pip install pdoc)", file=sys.stderr)
        return 2
    out = Path(argv[0]) if argv else DEFAULT_OUT
    if out.exists() and not out.is_dir():
        print(f"error: {out} is a file; give a folder for the site", file=sys.stderr)
        return 2
    problems = build(out)
    for problem in problems:
        print(f"error: pdoc: {problem}", file=sys.stderr)
    if problems:
        print(f"error: the API reference has {len(problems)} problem(s); fix the docstrings or names above",
              file=sys.stderr)
        return 1
    print(f"wrote {out / 'index.html'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
