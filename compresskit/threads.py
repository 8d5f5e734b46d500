"""Thread counts that do not leak: torch's intra-op thread count is process-wide, so whoever sets it
restores it (a recipe's ``threads: 1`` must not slow or change the next thing the process runs)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def torch_threads(threads: int | None = None) -> Iterator[None]:
    """Run the block with ``threads`` torch threads (None: unchanged); restore the previous count after."""
    import torch

    previous = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
