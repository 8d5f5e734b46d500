"""Quality metrics. So far: the analytic attribute reader for shapes (controllability)."""

from .attributes import attribute_accuracy, read_attributes

__all__ = ["attribute_accuracy", "read_attributes"]
