"""Structured: remove attention heads. q/k/v/o shrink for real.

Llama-style grouped-query attention shares each key/value head among a
group of query heads, so the same number of query heads goes from every
group (the fraction actually removed is the nearest achievable one, and
is reported); when groups have one head (plain multi-head attention), the
key/value head goes with it. Layouts known: separate q/k/v projections
with o_proj, out_proj (OPT, GPT-J, BioGPT, XGLM) or dense (Phi-1/2);
GPT-2's fused c_attn ([q | k | v]); Phi-3's fused qkv_proj ([q | k | v],
grouped); GPT-BigCode's c_attn (multi-query [q | one k | one v]: query heads
alone go; or each head's q, k and v side by side); GPT-NeoX's and Persimmon's
query_key_value (each head's q, k and v side by side); BERT encoders (a
head's query, key and value rows and its columns of the attention output).
Refused in one line: ALiBi (BLOOM, Falcon with alibi: slopes follow the head
count), Falcon (its config derives head_dim), CodeGen (model-parallel
interleaving), OLMo 2 (q/k norms over all heads). Importance is measured on calibration
text: the norm of each head's output entering the output projection,
times that projection's weights for the head.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch
from torch import nn

from core.errors import UnsupportedModelError
from core.models.linear_layers import convert_conv1d_to_linear, replace_module
from core.passes.base import PassConfig, PassContext, option, register
from core.passes.blocks import (
    config_set,
    decoder_layers,
    linear_role,
    module_path,
    slice_linear,
)
from core.passes.calibration import require_calibration, run_calibration

DISTILBERT_REFUSAL = (
    "prune_heads: DistilBERT derives its head size from dim / n_heads, so a model with "
    "fewer heads could not be saved and loaded back"
)

# The attention's output projection, by name (BERT's is attention.output.dense).
_OUTPUTS = ("o_proj", "out_proj", "dense", "c_proj")


def _attention(layer):
    attn = (
        getattr(layer, "self_attn", None)
        or getattr(layer, "attn", None)
        or getattr(layer, "attention", None)
    )
    if hasattr(attn, "q_lin"):
        raise UnsupportedModelError(DISTILBERT_REFUSAL)
    known = ("q_proj", "qkv_proj", "query_key_value", "c_attn")
    bert = hasattr(getattr(attn, "self", None), "query")  # not DeBERTa's query_proj
    if (
        attn is None
        or not (bert or any(hasattr(attn, name) for name in known))
        or not (hasattr(attn, "self") or any(hasattr(attn, name) for name in _OUTPUTS))
    ):
        raise UnsupportedModelError(
            f"prune_heads: the attention of {type(layer).__name__} is not a layout it knows "
            "(q/k/v_proj, Phi-3's qkv_proj, GPT-NeoX's query_key_value, GPT-2's "
            "c_attn or BERT's self.query/key/value)"
        )
    if hasattr(attn, "qkv_proj") and not hasattr(attn, "o_proj"):
        # CodeGen's qkv_proj interleaves its heads in model-parallel blocks.
        raise UnsupportedModelError(
            f"prune_heads: the fused qkv_proj of {type(layer).__name__} interleaves its heads "
            "in a layout it does not know"
        )
    q_norm = getattr(getattr(attn, "q_norm", None), "weight", None)
    if (
        q_norm is not None
        and hasattr(attn, "q_proj")
        and q_norm.numel() == attn.q_proj.out_features
    ):
        # OLMo 2 normalises all heads' queries together: removing one changes the rest.
        raise UnsupportedModelError(
            f"prune_heads: the attention of {type(layer).__name__} normalises queries and keys "
            "over all heads together, so removing a head would change the others"
        )
    return attn


def _output_projection(attn):
    if hasattr(attn, "self"):
        return attn.output.dense  # BERT
    return next(getattr(attn, name) for name in _OUTPUTS if hasattr(attn, name))


@register
@dataclass(frozen=True)
class PruneHeadsConfig(PassConfig):
    name = "prune_heads"
    kind = "prune"
    title = "Remove attention heads (structured)"
    needs_calibration = True
    fraction: float = option(
        0.25,
        label="heads removed",
        description="fraction of query heads removed per layer (nearest achievable value)",
        minimum=0.0,
        maximum=0.75,
        step=0.05,
    )

    def apply(self, model, context: PassContext):
        # The attention alone changes: any MLP (a mixture of experts too) may stay.
        convert_conv1d_to_linear(model)
        if _alibi(model.config):
            raise UnsupportedModelError(
                f"prune_heads: {type(model).__name__} uses ALiBi, whose slopes follow the head "
                "count: removing heads would change the positions every other head sees"
            )
        head_dim_field = getattr(type(model.config), "head_dim", None)
        if isinstance(head_dim_field, property) and head_dim_field.fset is None:
            # Falcon's rotary embedding reads it: a saved model would not load back.
            raise UnsupportedModelError(
                f"prune_heads: {type(model.config).__name__} derives head_dim from hidden_size / "
                "heads, so a model with fewer heads could not be saved and loaded back"
            )
        for layer in decoder_layers(model):  # an unknown layout is refused before any work
            _attention(layer)
        calibration = require_calibration(self.name, context.calibration)
        config = model.config
        model_kv = _model_kv_heads(_attention(decoder_layers(model)[0]), config)
        heads, kv_heads, head_dim, kept_heads, kept_kv = head_counts(
            self.fraction, config, model_kv
        )
        group = heads // kv_heads
        per_group_removed = (heads - kept_heads) // kv_heads if group > 1 else 0
        kv_removed = kv_heads - kept_kv
        if kept_heads == heads and self.fraction > 0:  # a pruning name that prunes nothing
            raise ValueError(no_head_removed(self.fraction, heads, kv_heads))
        if kept_heads == heads:
            return model
        layers = decoder_layers(model)
        scores = measure_head_importance(model, layers, heads, head_dim, calibration, context)
        for index, layer in enumerate(layers):
            attn = _attention(layer)
            per_head = scores[index].view(kv_heads, group)
            if group > 1:
                keep_in_group = (
                    per_head.topk(group - per_group_removed, dim=1).indices.sort().values
                )
                q_heads = (keep_in_group + torch.arange(kv_heads)[:, None] * group).flatten()
                kv_keep = torch.arange(kv_heads)
            else:
                kv_keep = per_head[:, 0].topk(kv_heads - kv_removed).indices.sort().values
                q_heads = kv_keep
            _shrink_attention(model, attn, q_heads, kv_keep, head_dim)
        new_heads = len(q_heads)
        config.head_dim = head_dim  # keep it explicit once heads * head_dim != hidden
        config_set(config, new_heads, "num_attention_heads", "n_head")
        if hasattr(config, "num_key_value_heads"):
            config.num_key_value_heads = len(kv_keep)
        context.notes.append(
            f"prune_heads: {heads - new_heads} of {heads} query heads removed per layer "
            f"({(heads - new_heads) / heads:.0%}; asked {self.fraction:.0%})"
        )
        return model

    def model_refusal(self, model_config) -> str | None:
        if getattr(model_config, "model_type", None) == "distilbert":
            return DISTILBERT_REFUSAL
        try:
            heads, kv_heads, _, kept, _ = head_counts(self.fraction, model_config)
        except (AttributeError, TypeError, ZeroDivisionError):
            return None  # a config without plain head counts: apply decides from the shapes
        if kept == heads and self.fraction > 0:  # 0 asks for nothing, and gets it
            return no_head_removed(self.fraction, heads, kv_heads)
        return None

    def estimate(self, entries, model_config):
        from core.passes.size_estimate import resized

        heads, _, head_dim, _, _ = head_counts(0.0, model_config)
        attention = [e for e in entries if e.is_linear and e.component == "attention"]
        key = next((e.out_features for e in attention if e.name.endswith("k_proj")), None)
        fused = next((e.out_features for e in attention if linear_role(e.name) == "qkv"), None)
        model_kv = kv_heads_of(key, fused, heads * head_dim, head_dim)
        _, _, _, new_heads, new_kv = head_counts(self.fraction, model_config, model_kv)
        out = []
        for e in entries:
            role = linear_role(e.name) if e.is_linear and e.component == "attention" else None
            if role == "q":
                e = resized(e, out_features=new_heads * head_dim)
            elif role == "kv":
                e = resized(e, out_features=new_kv * head_dim)
            elif role == "qkv":  # fused [q | k | v]
                e = resized(e, out_features=(new_heads + 2 * new_kv) * head_dim)
            elif role == "o":
                e = resized(e, in_features=new_heads * head_dim)
            elif _removed_head_norm(e.name, new_heads, new_kv):
                continue
            out.append(e)
        return out


_HEAD_NORM = re.compile(r"\.([qk])_layernorm\.norms\.(\d+)\.")


def _removed_head_norm(name: str, new_heads: int, new_kv: int) -> bool:
    """StableLM's per-head norm of a removed head (all are the same size,
    so which ones go does not change the estimate)."""
    match = _HEAD_NORM.search(name)
    return bool(match) and int(match.group(2)) >= (new_heads if match.group(1) == "q" else new_kv)


def _rows(heads: torch.Tensor, head_dim: int, offset: int = 0) -> torch.Tensor:
    return (heads[:, None] * head_dim + torch.arange(head_dim)).flatten() + offset


def _shrink_attention(model, attn, q_heads, kv_keep, head_dim) -> None:
    prefix = module_path(model, attn)
    q_rows = _rows(q_heads, head_dim)
    output = _output_projection(attn)
    if hasattr(attn, "self"):  # BERT: query/key/value in .self, output.dense after
        for part in ("query", "key", "value"):
            linear = getattr(attn.self, part)
            replace_module(model, f"{prefix}.self.{part}", slice_linear(linear, rows=q_rows))
        replace_module(model, f"{prefix}.output.dense", slice_linear(output, columns=q_rows))
        # BERT reshapes by head size, so only the bookkeeping needs the new count.
        attn.self.num_attention_heads = len(q_heads)
        attn.self.all_head_size = len(q_heads) * head_dim
        return
    if hasattr(attn, "q_proj"):
        kv_rows = _rows(kv_keep, head_dim)
        replace_module(model, f"{prefix}.q_proj", slice_linear(attn.q_proj, rows=q_rows))
        replace_module(model, f"{prefix}.k_proj", slice_linear(attn.k_proj, rows=kv_rows))
        replace_module(model, f"{prefix}.v_proj", slice_linear(attn.v_proj, rows=kv_rows))
    else:
        fused_name = next(n for n in ("qkv_proj", "c_attn", "query_key_value") if hasattr(attn, n))
        fused = getattr(attn, fused_name)
        rows = _fused_rows(attn, fused.out_features, output.in_features, q_heads, kv_keep, head_dim)
        replace_module(model, f"{prefix}.{fused_name}", slice_linear(fused, rows=rows))
        if hasattr(attn, "split_size"):  # GPT-2 splits c_attn by it
            attn.split_size = len(q_heads) * head_dim
    name = next(name for name in _OUTPUTS if getattr(attn, name, None) is output)
    replace_module(model, f"{prefix}.{name}", slice_linear(output, columns=q_rows))
    _recount(attn, len(q_heads), len(kv_keep), head_dim)
    for norm, kept in ((getattr(attn, "q_layernorm", None), q_heads),
                       (getattr(attn, "k_layernorm", None), kv_keep)):  # fmt: skip
        if hasattr(norm, "norms"):  # StableLM's per-head norms go with their heads
            norm.norms = nn.ModuleList(norm.norms[i] for i in kept.tolist())
            norm.num_heads = len(kept)


def _fused_rows(attn, width, q_width, q_heads, kv_keep, head_dim) -> torch.Tensor:
    """The rows of a fused q/k/v projection that the kept heads own."""
    if hasattr(attn, "query_key_value") or getattr(attn, "multi_query", None) is False:
        # GPT-NeoX, Persimmon, GPT-BigCode without multi-query: each head's
        # q, k and v side by side (as their forwards view the output).
        return _rows(q_heads, 3 * head_dim)
    # [q | k | v]: GPT-2's c_attn, Phi-3's qkv_proj, multi-query GPT-BigCode.
    kv_rows = _rows(kv_keep, head_dim)
    k_offset = q_width
    v_offset = q_width + (width - q_width) // 2
    return torch.cat([_rows(q_heads, head_dim), kv_rows + k_offset, kv_rows + v_offset])


def _alibi(config) -> bool:
    return config.model_type == "bloom" or bool(getattr(config, "alibi", False))


def _recount(attn, heads: int, kv_heads: int, head_dim: int) -> None:
    """The head counts each family's forward reads from its attention module
    (OPT, Persimmon and StableLM view by num_heads, XGLM reshapes to
    embed_dim, grouped families repeat keys by num_key_value_groups)."""
    for name, value in (
        ("num_heads", heads),
        ("num_attention_heads", heads),
        ("num_key_value_heads", kv_heads),
        ("kv_heads", kv_heads),  # GPT-BigCode
        ("num_key_value_groups", heads // kv_heads),
        ("embed_dim", heads * head_dim),
    ):
        if hasattr(attn, name):
            setattr(attn, name, value)


@torch.no_grad()
def measure_head_importance(model, layers, heads, head_dim, calibration, context):
    sums = [torch.zeros(heads) for _ in layers]

    def hook_for(i):
        def hook(_module, inputs):
            x = inputs[0].detach().float().reshape(-1, heads, head_dim)
            sums[i] += x.norm(dim=-1).sum(0).cpu()

        return hook

    projections = [_output_projection(_attention(layer)) for layer in layers]
    handles = [p.register_forward_pre_hook(hook_for(i)) for i, p in enumerate(projections)]
    try:
        context.progress_fraction(0, 1, "Measuring attention head importance")
        run_calibration(model, calibration, context.cancel)
    finally:
        for handle in handles:
            handle.remove()
    return [
        sums[i] * p.weight.detach().float().cpu().view(-1, heads, head_dim).norm(dim=(0, 2))
        for i, p in enumerate(projections)
    ]


def no_head_removed(fraction: float, heads: int, kv_heads: int) -> str:
    group = heads // kv_heads
    unit, share = (
        (f"{group} query heads per key/value head", 1 / group)
        if group > 1
        else (f"{heads} heads", 1 / kv_heads)
    )
    return (
        f"prune_heads: {fraction:.0%} of {unit} rounds to no head removed; "
        f"{share:.0%} or more removes one"
    )


def head_counts(fraction: float, config, kv_heads: int | None = None):
    """(heads, kv heads, head dim, heads kept, kv heads kept) for a fraction.
    ``kv_heads`` as the model's shapes say, where known: GPT-NeoX's config
    may carry a num_key_value_heads that its attention never reads."""
    heads = config.num_attention_heads
    kv_heads = kv_heads or getattr(config, "num_key_value_heads", None) or heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    group = heads // kv_heads
    # At least one head stays per group (or in all): rounding 0.75 of a group
    # of 2 up to 2 would leave an attention with no query heads.
    if group > 1:
        removed = min(round(fraction * group), group - 1)
        return heads, kv_heads, head_dim, heads - removed * kv_heads, kv_heads
    kept = kv_heads - min(round(fraction * kv_heads), kv_heads - 1)
    return heads, kv_heads, head_dim, kept, kept


def kv_heads_of(key_width: int | None, fused_width: int | None, q_width: int, head_dim: int):
    """Key/value heads from the key projection's width, or from a fused
    [q | k | v] projection's; neither (GPT-2, GPT-NeoX, BERT): one per head."""
    if key_width:
        return key_width // head_dim
    if fused_width:
        return (fused_width - q_width) // (2 * head_dim)
    return q_width // head_dim


def _model_kv_heads(attn, config) -> int:
    heads, _, head_dim, _, _ = head_counts(0.0, config)
    key = getattr(attn, "k_proj", None)
    fused = next(
        (getattr(attn, n) for n in ("qkv_proj", "c_attn", "query_key_value") if hasattr(attn, n)),
        None,
    )
    return kv_heads_of(
        key.out_features if key is not None else None,
        fused.out_features if fused is not None else None,
        heads * head_dim,
        head_dim,
    )
