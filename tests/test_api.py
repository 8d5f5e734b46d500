"""The flat public API: every advertised name resolves, lazily."""

from __future__ import annotations

import subprocess
import sys

import compresskit


def test_every_public_name_resolves():
    for name in compresskit.__all__:
        assert getattr(compresskit, name) is not None, name
    assert compresskit.run.__module__ == "compresskit.api"
    assert compresskit.compress.__module__ == "compresskit.api"


def test_import_compresskit_does_not_import_torch():
    code = "import sys, compresskit; print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "False", done.stderr
