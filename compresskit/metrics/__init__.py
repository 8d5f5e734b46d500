"""Quality metrics: KID/FID on EfficientNet-Lite0 features, fidelity to a teacher, shapes attributes."""

from .attributes import attribute_accuracy, read_attributes
from .distribution import kid_fid, real_features
from .features import Lite0Features, extract_features
from .fidelity import fidelity

__all__ = ["Lite0Features", "attribute_accuracy", "extract_features", "fidelity", "kid_fid", "read_attributes",
           "real_features"]
