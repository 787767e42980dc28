"""Finding and replacing the linear layers a pass works on.

Names follow the three families we handle: Llama (``self_attn``, ``mlp``),
GPT-2 (``attn``, ``mlp``) and BERT encoders (``attention``; the MLP is
``intermediate.dense`` then the layer's ``output.dense``; ``pooler`` and
``classifier`` form the head).

GPT-2 stores its projections as transformers' ``Conv1D`` (a transposed
linear); quantisation libraries skip it silently, so passes convert it to
``nn.Linear`` first (same maths, weight transposed).
"""

from __future__ import annotations

import torch
from torch import nn

ATTENTION_HINTS = ("attn", "attention")
# "moe": a mixture of experts' block under its own name (GraniteMoE's and
# PhiMoE's block_sparse_moe), the feed-forward part of its layer all the same.
MLP_HINTS = ("mlp", "feed_forward", "ffn", "moe")
# An MLP's projections held by the layer itself, with no MLP module around
# them (OPT, XGLM, BioGPT: ``layers.N.fc1``/``fc2``).
MLP_PARTS = ("fc1", "fc2")


def component_of(name: str) -> str:
    """Which part of the model a parameter or module path belongs to."""
    parts = name.split(".")
    # DistilBERT's pre_classifier and ModernBERT's head.dense feed the classifier.
    if any(p in ("lm_head", "score", "classifier", "pooler", "pre_classifier") for p in parts) or (
        parts[0] == "head"
    ):
        return "head"
    if any(p in ("embed_tokens", "wte", "wpe", "embeddings", "embed_positions") for p in parts):
        return "embeddings"
    if any(any(h in p for h in ATTENTION_HINTS) for p in parts):
        return "attention"
    if any(any(h in p for h in MLP_HINTS) for p in parts) or any(p in MLP_PARTS for p in parts):
        return "mlp"
    # BERT: after the attention test above, a layer's ``intermediate`` and
    # ``output`` (dense + LayerNorm) are its feed-forward block.
    if "intermediate" in parts or "output" in parts:
        return "mlp"
    return "other"


def convert_conv1d_to_linear(model: nn.Module) -> int:
    """Replace every transformers Conv1D by an equivalent nn.Linear; returns how many."""
    from transformers.pytorch_utils import Conv1D

    count = 0
    for name, module in list(model.named_modules()):
        if isinstance(module, Conv1D):
            in_features, out_features = module.weight.shape
            linear = nn.Linear(in_features, out_features, bias=module.bias is not None)
            linear.to(device=module.weight.device, dtype=module.weight.dtype)
            with torch.no_grad():
                linear.weight.copy_(module.weight.t())
                if module.bias is not None:
                    linear.bias.copy_(module.bias)
            replace_module(model, name, linear)
            count += 1
    return count


def block_linears(model: nn.Module) -> list[tuple[str, nn.Linear]]:
    """The nn.Linear layers inside the transformer blocks (attention and MLP),
    not the embeddings or the output head."""
    return [
        (name, module)
        for name, module in model.named_modules()
        if isinstance(module, nn.Linear) and component_of(name) in ("attention", "mlp")
    ]


def replace_module(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, new)


def unsupported_layers_error(pass_name: str, model: nn.Module) -> ValueError:
    kinds = sorted({type(m).__name__ for m in model.modules() if len(list(m.children())) == 0})
    return ValueError(
        f"{pass_name}: this model has no linear layers in its transformer blocks that the "
        f"pass can handle (leaf module types: {', '.join(kinds[:8])})."
    )


def matrices_outside_linears(model: nn.Module, linears: list | None = None) -> list[str]:
    """Float weight matrices in the transformer blocks that are not a linear
    layer's weight: a mixture of experts' 3-D expert tensors and its router,
    a custom layer's raw parameter. A pass over block linears would leave
    them as they are."""
    inside = {id(module.weight) for _, module in (linears or block_linears(model))}
    # Lookup tables (MPNet's and T5's relative position buckets) are read a
    # row at a time, like the token embedding: no pass over linears owes them.
    inside |= {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    return [
        name
        for name, parameter in model.named_parameters()
        if parameter.dim() >= 2
        and parameter.is_floating_point()
        and id(parameter) not in inside
        and _reached_by_block_passes(name)
    ]


def _reached_by_block_passes(name: str) -> bool:
    """In the attention or MLP, or in a numbered transformer block
    (``layers.3.…``) under a name no component hint knows: either way a
    weight there that is not a linear's counts as left unchanged."""
    component = component_of(name)
    if component in ("attention", "mlp"):
        return True
    return component == "other" and any(p.isdigit() for p in name.split(".")[:-2])


def linears_to_change(pass_name: str, model: nn.Module, holds=None) -> list[tuple[str, nn.Linear]]:
    """The block linears a pass changes (GPT-2's Conv1D converted first).
    Refused in one line: a model with none, and one whose blocks keep weight
    matrices outside linear layers where the pass acts (``holds(name)``: in
    its scope; None: everywhere), which it would leave in float while the
    run's name says they were changed."""
    convert_conv1d_to_linear(model)
    linears = block_linears(model)
    if not linears:
        raise unsupported_layers_error(pass_name, model)
    holds = holds or (lambda name: True)
    left = [
        name
        for name in matrices_outside_linears(model, linears)
        if holds(name) or holds(name.rpartition(".")[0])
    ]
    if left:
        from core.errors import UnsupportedModelError

        shown = ", ".join(left[:2]) + (f" and {len(left) - 2} more" if len(left) > 2 else "")
        raise UnsupportedModelError(
            f"{pass_name}: {type(model).__name__} keeps weights of its blocks the pass cannot "
            f"change ({shown}; e.g. a mixture of experts' expert tensors, or layers under "
            "names it does not know); it changes the attention's and MLP's linear layers only"
            + (
                "; ONNX Runtime quantises a mixture's experts (--backend ort-w8, ort-w4, ort-int8)"
                if any(".experts." in name for name in left)
                else ""
            )
        )
    return linears
