"""KID and FID between generated and real images, in EfficientNet-Lite0 feature space.

The arithmetic is torchmetrics' own (``KernelInceptionDistance``, ``FrechetInceptionDistance``); only the
feature extractor is ours. Features are extracted once (real reference features are cached on disk by
a hash of the image bytes) and handed to torchmetrics through a pass-through module, so a real split is
never re-encoded.

KID is the primary figure at these sample sizes (hundreds to a few thousand images): it is unbiased and
comes with a spread (std over random subsets). FID with 1280-d features and fewer samples than
dimensions is biased upwards and only comparable at equal sample counts; it is reported for familiarity.
"""

from __future__ import annotations

import hashlib
import warnings

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from ..cache import atomic_file, cache_root
from ..errors import DataError
from .features import FEATURE_DIM, FEATURE_PX, extract_features

KID_SUBSETS = 100
KID_SUBSET_SIZE = 1000  # capped at half the smaller sample count, so subsets differ and the std means something
MIN_SAMPLES = 50


class _Precomputed(nn.Module):
    """Feature "extractor" for torchmetrics that receives features already extracted."""

    num_features = FEATURE_DIM

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return features


def real_features(images: np.ndarray, *, progress=None) -> torch.Tensor:
    """Lite0 features of a real image set, cached under the cache root by a hash of the pixels."""
    digest = hashlib.sha256(np.ascontiguousarray(images).tobytes()).hexdigest()[:24]
    path = cache_root() / "features" / f"lite0-openvino-{FEATURE_PX}px-{digest}.safetensors"
    if path.exists():
        try:
            return load_file(str(path))["features"]
        except Exception:  # a damaged cache file is rebuilt, never trusted
            path.unlink(missing_ok=True)
    features = extract_features(images, progress=progress)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path) as tmp:
        save_file({"features": features.contiguous()}, str(tmp))
    return features


_REAL_FID: dict[str, object] = {}  # the FID statistics of the last real set: a bench scores every candidate on it


def _fid_with_real(real: torch.Tensor):
    """torchmetrics' FID holding ``real``'s statistics, with no generated features yet. The real side's sums
    (a 1280x1280 covariance in float64 over thousands of rows: ~2 s here) are accumulated once per real set
    and kept across ``reset`` (``reset_real_features=False``): the same figures, not recomputed per candidate."""
    from torchmetrics.image.fid import FrechetInceptionDistance

    key = hashlib.sha256(real.detach().cpu().contiguous().numpy().tobytes()).hexdigest()
    fid = _REAL_FID.get(key)
    if fid is None:
        fid = FrechetInceptionDistance(feature=_Precomputed(), reset_real_features=False)
        fid.update(real.double(), real=True)
        _REAL_FID.clear()
        _REAL_FID[key] = fid
    fid.reset()  # drops the generated side only
    return fid


def kid_fid(real: torch.Tensor, fake: torch.Tensor, *, seed: int = 0, subsets: int = KID_SUBSETS) -> dict:
    """KID (mean and std over ``subsets`` random subsets) and FID between two feature sets."""
    from torchmetrics.image.kid import KernelInceptionDistance

    n = min(len(real), len(fake))
    if n < MIN_SAMPLES:
        raise DataError(f"KID/FID need at least {MIN_SAMPLES} real and generated images, got {len(real)} and {len(fake)}")
    with warnings.catch_warnings():  # "will save all extracted features in buffer": features are all we give it
        warnings.simplefilter("ignore", UserWarning)
        kid = KernelInceptionDistance(feature=_Precomputed(), subsets=subsets, subset_size=min(KID_SUBSET_SIZE, n // 2))
        fid = _fid_with_real(real)
    kid.update(real.double(), real=True)
    kid.update(fake.double(), real=False)
    fid.update(fake.double(), real=False)
    with torch.random.fork_rng():  # KID draws its subsets with the global RNG
        torch.manual_seed(seed)
        kid_mean, kid_std = kid.compute()
    return {
        "kid": float(kid_mean), "kid_std": float(kid_std), "fid": float(fid.compute()),
        "n_real": len(real), "n_fake": len(fake), "kid_subset_size": kid.subset_size, "kid_subsets": subsets,
    }
