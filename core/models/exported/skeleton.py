"""The model transformers would build from a config: the yardstick that says
which modules of a compressed model transformers can recreate by itself,
and the frame our own loader fills with the exported tensors."""

from __future__ import annotations

import copy

import torch
from torch import nn

# Keys that head pruning changes. GPT-2 derives head_dim from n_embd / n_head,
# so its pruned config may not even construct; the original values then
# build the frame and the recorded module attributes fix the heads.
HEAD_KEYS = ("num_attention_heads", "n_head", "num_key_value_heads", "head_dim")


def build_config(config, overrides: dict):
    built = copy.deepcopy(config)
    for key, value in overrides.items():
        setattr(built, key, value)
    return built


def build_skeleton(config, overrides: dict, device: str = "meta") -> nn.Module:
    """An uninitialised model of the config's class (meta: shapes only): a
    sequence classifier when the config names one (as core.models.loading decides),
    else a causal LM."""
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification
    from transformers.initialization import no_init_weights

    architectures = getattr(config, "architectures", None) or []
    classifier = any(a.endswith("ForSequenceClassification") for a in architectures)
    auto = AutoModelForSequenceClassification if classifier else AutoModelForCausalLM
    built = build_config(config, overrides)
    with torch.device(device), no_init_weights():
        model = auto.from_config(built, dtype=torch.float32)
    return model.eval()


def skeleton_for(config, original_config) -> tuple[nn.Module, dict]:
    """The meta skeleton of ``config`` and the overrides it needed, if any."""
    try:
        return build_skeleton(config, {}), {}
    except ValueError:
        overrides = {
            key: getattr(original_config, key)
            for key in HEAD_KEYS
            if getattr(original_config, key, None) is not None
            and getattr(config, key, None) != getattr(original_config, key)
        }
        if not overrides:
            raise
        return build_skeleton(config, overrides), overrides


def scalar_attributes(module: nn.Module) -> dict:
    """The plain settings a module keeps besides tensors (head counts, sizes)."""
    return {
        key: value
        for key, value in vars(module).items()
        if not key.startswith("_")
        and key != "training"
        and (value is None or isinstance(value, (bool, int, float, str)))
    }
