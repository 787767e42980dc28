"""A folder's config.json checked against itself and its weight files before
transformers builds anything from it.

transformers allocates what the config says: a config whose vocab_size or
layer count was edited (by mistake or on purpose) makes it allocate
terabytes, or build a million layers for minutes, before it finds that the
weights do not fit; a negative width fails deep in torch with a traceback.
These checks refuse such a folder in one line, from the config's numbers
and the files' sizes alone.
"""

from __future__ import annotations

from pathlib import Path

from core.errors import CorruptModelError
from core.message_text import shown
from core.models.description import human_bytes  # KiB for a tiny model, not 0.0 MiB

# The sizes a block's shapes are read from, by their names across families
# (transformers maps most to the first name; a few keep their own).
SIZES = {
    "hidden_size": ("hidden_size", "n_embd", "d_model"),
    "num_hidden_layers": ("num_hidden_layers", "n_layer", "num_layers"),
    "vocab_size": ("vocab_size",),
    "num_attention_heads": ("num_attention_heads", "n_head"),
    "num_key_value_heads": ("num_key_value_heads",),
    "intermediate_size": ("intermediate_size", "n_inner", "ffn_dim"),
    "head_dim": ("head_dim",),
    # The context: 0 or -1 would read as "no limit" or refuse every prompt.
    "max_position_embeddings": ("max_position_embeddings", "n_positions", "max_seq_len", "n_ctx"),
}
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt")
# Fewest bytes a stored weight can take (a 4-bit checkpoint), and the slack
# the bound allows: the bound counts only the embedding, two hidden x hidden
# matrices and the MLP's two a layer, far below any real model's weights.
MIN_BYTES_PER_WEIGHT = 0.5
SLACK = 2.0


def _size(config, names: tuple[str, ...]):
    for name in names:
        value = getattr(config, name, None)
        if value is not None:
            return name, value
    return names[0], None


def text_config(config):
    """The language model's part of ``config`` (a multimodal config nests it)."""
    return config.get_text_config() if hasattr(config, "get_text_config") else config


def _sizes(config, where: str) -> dict[str, int]:
    """The config's sizes that are set; refused unless positive whole numbers."""
    text = text_config(config)
    found = {}
    for key, names in SIZES.items():
        name, value = _size(text, names)
        if value is None:
            continue
        refuse_bad_size(where, name, value)
        found[key] = value
    # A window of 0 or less loads, then fails in attention's masks mid-generation.
    window = getattr(text, "sliding_window", None)
    if window is not None and getattr(text, "use_sliding_window", True) is not False:
        refuse_bad_size(where, "sliding_window", window)
    return found


def refuse_bad_size(where: str, name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise CorruptModelError(
            f"{where}: config.json's {name} is {shown(value)}; it must be a positive whole number"
        )


def weight_file_bytes(folder: Path) -> int:
    return sum(
        f.stat().st_size for f in folder.iterdir() if f.is_file() and f.suffix in WEIGHT_SUFFIXES
    )


def fewest_weight_bytes(sizes: dict[str, int], experts: bool = False) -> float:
    """A lower bound on the bytes of weights the config describes: the
    embedding, and a layer's query and output projections and its MLP's two
    hidden x intermediate matrices (a raised intermediate_size alone made
    transformers allocate gigabytes for the "missing" MLP before refusing).
    ``experts``: a mixture of experts, whose intermediate_size may belong to
    layers it does not have, so its MLP is not counted."""
    hidden = sizes.get("hidden_size", 0)
    mlp = 0 if experts else 2 * hidden * sizes.get("intermediate_size", 0)
    weights = sizes.get("vocab_size", 0) * hidden
    weights += sizes.get("num_hidden_layers", 0) * (2 * hidden * hidden + mlp)
    return weights * MIN_BYTES_PER_WEIGHT


# Config fields only a mixture of experts sets.
EXPERT_FIELDS = ("num_experts", "num_local_experts", "n_routed_experts", "moe_intermediate_size")


def check_config(config, source) -> None:
    """Refuse a config with a size that is not a positive whole number, or,
    for a local folder (``source`` a Path) with weight files, one describing
    far more weights than the files hold."""
    sizes = _sizes(config, str(source))
    if not isinstance(source, Path):
        return  # a hub id: its files are not here to measure
    folder = source
    stored = weight_file_bytes(folder)
    if stored == 0:
        return  # transformers says which file is missing
    experts = any(getattr(text_config(config), name, None) for name in EXPERT_FIELDS)
    needed = fewest_weight_bytes(sizes, experts)
    if needed > SLACK * stored:
        raise CorruptModelError(
            f"{folder}: config.json describes at least {human_bytes(needed)} of weights "
            f"(hidden_size {sizes.get('hidden_size')}, {sizes.get('num_hidden_layers')} "
            f"layers, vocab_size {sizes.get('vocab_size')}, intermediate_size "
            f"{sizes.get('intermediate_size')}) but the weight files hold "
            f"{human_bytes(stored)}: the weight files are cut short, or the config belongs "
            "to other weights"
        )
