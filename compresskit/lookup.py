"""Name -> entry lookups with one wording for an unknown name, shared by every registry.

    lookup(DATASETS, "emojj", "dataset", error=DataError)
    # DataError: unknown dataset 'emojj'; did you mean 'emoji'? (known: emoji, shapes)

``unknown_name`` gives the same line for callers that raise something else (a pydantic validator's
ValueError) or prefix it with where the name was found (a recipe's key path).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from typing import TypeVar

from .errors import CompresskitError

T = TypeVar("T")


def unknown_name(kind: str, name: str, known: Iterable[str], *, hint: str = "", shown: str | None = None) -> str:
    """``unknown {kind} {name!r}; did you mean {close!r}? (known: a, b, c)``, plus ``; {hint}`` if given.

    The did-you-mean part is left out when no known name is close; ``known`` keeps its order. ``shown``: how
    the name is printed when that differs from what is matched (a config key's whole path, ``generator.ngff``).
    """
    known = [str(k) for k in known]
    close = difflib.get_close_matches(str(name), known, n=1)
    message = f"unknown {kind} {name if shown is None else shown!r}"
    if close:
        message += f"; did you mean {close[0]!r}?"
    message += f" (known: {', '.join(known) or 'none'})"
    return f"{message}; {hint}" if hint else message


def lookup(table: Mapping[str, T], name: str, kind: str, *, error: type[CompresskitError] = CompresskitError,
           hint: str = "") -> T:
    """``table[name]``, or ``error`` with ``unknown_name``'s one line (exit code 2 for a bad-input error)."""
    try:
        return table[name]
    except (KeyError, TypeError):  # TypeError: an unhashable name (a list from YAML) is unknown too
        raise error(unknown_name(kind, name, table, hint=hint)) from None
