"""A model folder is checked before anything reads it: by its ``checksums.sha256``, or by its artifact manifest.

The checksums file itself (format, writing, checking) is ``compresskit.model_files``. ``verify_model_folder``
runs on every load: a run's artifact folder given as a model (it has ``manifest.json`` and no checksums file)
is checked against its manifest instead.
"""

from __future__ import annotations

from pathlib import Path

from ..artifact import MANIFEST, load_artifact
from ..errors import ArtifactError, ModelError
from ..model_files import CHECKSUMS_FILE, verify_checksums


def verify_model_folder(folder: Path) -> bool:
    """Check every file listed in ``checksums.sha256`` (or, for an artifact folder, its manifest); True if
    verified, False (with a note) if the folder lists none."""
    folder = Path(folder)
    if not (folder / CHECKSUMS_FILE).is_file() and (folder / MANIFEST).is_file():
        try:
            load_artifact(folder)
            return True
        except ArtifactError as exc:
            raise ModelError(str(exc)) from None
    return verify_checksums(folder)
