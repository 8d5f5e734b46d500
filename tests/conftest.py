"""Shared fixtures. Every test runs offline against a throw-away cache root."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from compresskit.cache import CACHE_ENV


@pytest.fixture(scope="session", autouse=True)
def cache_root_for_tests(tmp_path_factory) -> Path:
    """One cache root for the session, so expensive builds (full emoji set, encoder) happen once."""
    root = tmp_path_factory.mktemp("compresskit-cache")
    old = os.environ.get(CACHE_ENV)
    os.environ[CACHE_ENV] = str(root)
    os.environ["HF_HUB_OFFLINE"] = "1"
    yield root
    if old is None:
        os.environ.pop(CACHE_ENV, None)
    else:
        os.environ[CACHE_ENV] = old


@pytest.fixture
def fresh_cache(tmp_path, monkeypatch) -> Path:
    """An empty cache root for one test."""
    root = tmp_path / "cache"
    monkeypatch.setenv(CACHE_ENV, str(root))
    return root
