"""Compression passes: one file per technique, each a versioned config
dataclass that knows its own slider ranges, plus the function that applies it.

Importing this package registers every pass.
"""

from core.passes import (  # noqa: F401  (imported to register)
    cast,
    int4_weight_only,
    int8_dynamic,
    int8_weight_only,
    low_rank,
    prune_heads,
    prune_layers,
    prune_mlp,
    prune_unstructured,
)
from core.passes.base import REGISTRY, PassConfig, PassContext

__all__ = ["REGISTRY", "PassConfig", "PassContext"]
