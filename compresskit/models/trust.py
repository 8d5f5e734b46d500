"""Which user factories may run: a model folder is data, and loading one runs no code the user did not name.

A folder written for a user's generator holds ``factory.json``, which names an importable callable
(``package.module:callable``). Loading the folder calls it, so a folder someone downloads could run any
program. As with ``transformers``' ``trust_remote_code``, such a factory runs only when the user trusts it:

* the recipe's ``input.factory`` names it (the user wrote the recipe), or
* the command line does: ``--trust-factory my_package.gan:build_generator`` (or ``my_package``: the package), or
* a file the user owns lists it, one entry per line: ``~/.config/compresskit/trusted_factories``
  (``$XDG_CONFIG_HOME`` honoured; ``#`` starts a comment), or the environment does
  (``COMPRESSKIT_TRUST_FACTORY``, comma-separated).

Trust granted in a process is written to that environment variable, so the worker processes that the bench
starts (and that load the same folders) inherit it. The package's own modules (``compresskit.*``) are trusted;
shipped zoo models and the package's architectures have no factory at all (``config.json``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

from ..errors import ConfigError, ModelError

TRUST_ENV = "COMPRESSKIT_TRUST_FACTORY"
OWN_PACKAGE = "compresskit"


def trust_file() -> Path:
    """The user's list of trusted factories or packages (one per line)."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "compresskit" / "trusted_factories"


def trusted_entries() -> list[str]:
    """Every trusted entry: from the environment (this process's grants included) and the user's file."""
    entries = [e.strip() for e in os.environ.get(TRUST_ENV, "").split(",")]
    try:
        lines = trust_file().read_text("utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        lines = []
    entries += [line.split("#", 1)[0].strip() for line in lines]
    return [e for e in entries if e]


def is_trusted(factory: str) -> bool:
    """Whether ``factory`` (``module:callable``) is named exactly, or its module or a package above it is."""
    module = factory.partition(":")[0]
    for entry in [OWN_PACKAGE, *trusted_entries()]:
        if entry == factory or entry == module or module.startswith(entry + "."):
            return True
    return False


def trust(*factories: str) -> None:
    """Trust these factories (or modules) in this process and the processes it starts."""
    known = [e.strip() for e in os.environ.get(TRUST_ENV, "").split(",") if e.strip()]
    added = [f.strip() for f in factories if f and f.strip() and f.strip() not in known]
    if added:
        os.environ[TRUST_ENV] = ",".join(known + added)


def trust_factories(names: Sequence[str], option: str = "trust_factory") -> None:
    """Trust ``names`` (each ``package.module[:callable]``, checked); ``option`` is how the error line names where
    they came from (``--trust-factory`` on the command line, ``trust_factory`` in Python)."""
    for name in names:
        if not re.fullmatch(r"[A-Za-z_][\w.]*(:[A-Za-z_]\w*)?", name):
            raise ConfigError(f"{option} takes package.module or package.module:callable; got {name!r}")
    trust(*names)


def require_trusted(factory: str, where: Path) -> None:
    """ModelError (exit 2, one line) unless ``factory`` is trusted: loading ``where`` would call it."""
    if not is_trusted(factory):
        raise ModelError(f"{where} names the factory {factory!r}, which is not trusted: loading it would run that code; "
                         f"if you trust it, pass --trust-factory {factory} (or list it in {trust_file()})")
