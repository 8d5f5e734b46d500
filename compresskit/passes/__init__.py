"""Compression passes, one per file; the registry (compresskit.registry) names them."""
