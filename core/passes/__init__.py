"""Compression passes: one file per technique, each a versioned config
dataclass that knows its own slider ranges, plus the function that applies it.

``REGISTRY`` (and ``PassConfig``, ``PassContext``) are read from here; the
first read imports every pass module, which registers it. Importing the
package alone imports no pass (and so no torch): the CLI's parser lists the
pass names from ``core.passes.names`` without it.
"""

__all__ = ["REGISTRY", "PassConfig", "PassContext"]


def __getattr__(name: str):
    if name not in __all__:
        raise AttributeError(f"module 'core.passes' has no attribute {name!r}")
    from core.passes import (  # noqa: F401  (imported to register)
        base,
        cast,
        heal,
        int4_weight_only,
        int8_dynamic,
        int8_head,
        int8_weight_only,
        low_rank,
        low_rank_aware,
        prune_heads,
        prune_layers,
        prune_mlp,
        prune_sparsegpt,
        prune_unstructured,
        prune_wanda,
    )

    return getattr(base, name)
