"""The registered pass names, known without importing the passes (torch):
the CLI's help lists them at once. tests/test_layers.py holds this list
equal to the registry."""

PASS_NAMES = (
    "cast",
    "heal",
    "int4_weight_only",
    "int8_dynamic",
    "int8_head",
    "int8_weight_only",
    "low_rank",
    "low_rank_aware",
    "prune_heads",
    "prune_layers",
    "prune_mlp",
    "prune_sparsegpt",
    "prune_unstructured",
    "prune_wanda",
)
