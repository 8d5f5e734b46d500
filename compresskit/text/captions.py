"""Caption checks shared by the torch text encoder and the torch-free bundle runtime (imports nothing heavy)."""

from __future__ import annotations

from collections.abc import Sequence

from ..errors import TextError


def check_captions(captions: Sequence[str]) -> list[str]:
    """Captions as a list; one clear error for a non-list, a non-string, or an empty/blank caption."""
    if isinstance(captions, str) or not isinstance(captions, Sequence):
        raise TextError("captions must be a list of strings; wrap a single caption in a list")
    for i, caption in enumerate(captions):
        if not isinstance(caption, str):
            raise TextError(f"caption {i} is {type(caption).__name__}, not text; pass strings only")
        if not caption.strip():
            raise TextError(f"caption {i} is empty; every caption needs some text")
        try:
            caption.encode("utf-8")
        except UnicodeEncodeError:  # bytes that were not UTF-8 (a shell passes them as lone surrogates)
            raw = caption.encode("utf-8", "surrogateescape")[:80]
            raise TextError(f"caption {i} ({raw!r}) is not valid UTF-8 text; pass captions as UTF-8") from None
    return list(captions)
