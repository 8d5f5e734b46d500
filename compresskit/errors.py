"""Typed errors. Library code raises these; the CLI turns each into one line and an exit code.

Every message should say what is wrong *and* what to do about it, in one line.
"""

from __future__ import annotations


class CompresskitError(Exception):
    """Base class. ``exit_code`` is what the CLI exits with (2: bad input, 1: a failed run)."""

    exit_code = 2


class DataError(CompresskitError):
    """A dataset name, option or source is wrong or missing."""


class CacheError(CompresskitError):
    """The cache folder cannot be created, written or read."""


class TextError(CompresskitError):
    """A caption is empty or not text, or the text encoder cannot be loaded."""


class ModelError(CompresskitError):
    """A model name, checkpoint folder or architecture config is wrong, missing or corrupt."""


class ConfigError(CompresskitError):
    """A YAML config (training, recipe) has an unknown key, a bad value, or cannot be read."""


class RecipeError(ConfigError):
    """A recipe is malformed: unknown pass or key, bad value, steps whose formats do not chain."""


class ArtifactError(CompresskitError):
    """An artifact folder is missing, incomplete, or fails its manifest's checksums."""


class PassFailed(CompresskitError):
    """A pass ran and failed (e.g. export parity above tolerance); its step leaves no artifact."""

    exit_code = 1


class TrainingDiverged(CompresskitError):
    """Training produced non-finite or exploding losses; the last good checkpoint is kept."""

    exit_code = 1


class GateFailed(CompresskitError):
    """At least one release gate failed (the printed gate table says which); ``report`` holds the report."""

    exit_code = 1

    def __init__(self, message: str, report=None):
        super().__init__(message)
        self.report = report


class DistributedJobFailed(CompresskitError):
    """A torchrun job stopped because one of its processes failed or died."""

    exit_code = 1


class DiskFull(CompresskitError):
    """The disk filled while something was written: that was removed, what was finished is kept; free space and
    rerun (``diskspace.disk_full_said``)."""
