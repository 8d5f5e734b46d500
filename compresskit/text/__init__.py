"""Caption encoding: pretrained MiniLM sentence and token features, cached on disk."""

from .cache import EmbeddingCache
from .encoder import EMBED_DIM, TextEncoder, TokenFeatures, check_captions

__all__ = ["EMBED_DIM", "EmbeddingCache", "TextEncoder", "TokenFeatures", "check_captions"]
