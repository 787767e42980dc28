"""Is a measured configuration broken? One line saying why, or "".

A configuration has collapsed when its top-1 agreement with the original
falls below 0.5 (for a classifier: its labels agree on fewer than half the
reviews) or its perplexity on the same tokens passes 3x the original's. The
line names the measured numbers and a likely cause read from the recipe: the
pass whose setting is known to hurt most (how strong each setting is, is a
rule of thumb from the passes' own descriptions, not a measurement; the
numbers before it are measured).
"""

from __future__ import annotations

import math

from core.message_text import counted

AGREEMENT_FLOOR = 0.5
PPL_RATIO_CEILING = 3.0
# What a perplexity that is not a number says about the model.
NOT_A_NUMBER = "perplexity is not a number (NaN in the weights or activations)"
RUNNER_UP = ", or else "  # between the likely cause and the next setting (labels cut here)

# Families whose block layout the SmoothQuant fold was written for
# (core/passes/smooth_quant.py: Llama-style RMSNorm producers, GPT-2 LayerNorms),
# and those where it knowingly folds nothing (BERT: post-norm, so plain W8A8).


def broken_cause(
    agreement: float | None,
    ppl_ratio: float | None,
    recipe: dict | None = None,
    backend: str = "torch",
    model_type: str = "",
    agreement_name: str = "top-1 agreement",
    cause: str = "",
    layers: int | None = None,
    compared_with: str = "the original's",
) -> str:
    """Empty when healthy (or nothing was measured), else "collapsed: ...;
    likely cause: ...": ``cause`` where it is known (the loaded model's own
    weights are not numbers), else the recipe's most lossy setting."""
    failures = []
    # Not a number (NaN weights or activations) compares false with every
    # bound, so it is named first: it would otherwise pass as healthy.
    if agreement is not None and not math.isfinite(agreement):
        failures.append(f"{agreement_name} is not a number")
    elif agreement is not None and agreement < AGREEMENT_FLOOR:
        failures.append(f"{agreement_name} {agreement:.2f} < {AGREEMENT_FLOOR:g}")
    if ppl_ratio is not None and math.isnan(ppl_ratio):
        failures.append(NOT_A_NUMBER)
    elif ppl_ratio is not None and ppl_ratio > PPL_RATIO_CEILING:
        failures.append(f"perplexity {ppl_ratio:.1f}x {compared_with} > {PPL_RATIO_CEILING:g}x")
    if not failures:
        return ""
    cause = cause or likely_cause(recipe, backend, model_type, layers)
    return f"collapsed: {'; '.join(failures)}; likely cause: {cause}"


def likely_cause(
    recipe: dict | None, backend: str = "torch", model_type: str = "", layers: int | None = None
) -> str:
    """The most damaging setting in ``recipe`` (a Recipe.to_dict()) and ``backend``,
    and the next one where there are several;
    ``layers``: the original's layer count, which sets what dropping some costs."""
    suspects = [_suspect(item, model_type, layers) for item in (recipe or {}).get("passes", [])]
    if backend == "ort-int8":
        suspects.append(
            (0.6, "ONNX Runtime int8 (per-tensor activations, no SmoothQuant in the graph)")
        )
    if backend.startswith("ort-int8-static"):
        suspects.append((0.6, "ONNX Runtime static int8 (activation ranges from calibration)"))
    if backend == "ort-w4":
        # The graph's own quantiser: no calibration, unlike the int4 GPTQ/AWQ passes.
        suspects.append(
            (0.5, "ONNX Runtime int4 weights rounded to nearest in blocks of 32 (no GPTQ/AWQ)")
        )
    if backend == "ort-fused-w4":  # core.onnx.fused: GPTQ in the layers, the head in int8
        suspects.append((0.5, "ONNX Runtime int4 weights in blocks of 32 (GPTQ)"))
    suspects = [s for s in suspects if s is not None]
    if not suspects:
        return (
            "no setting in the recipe is known to be this lossy; check that every pass "
            "supports this model family"
        )
    # The ranking is a rule of thumb (a sweep saw prune_mlp alone collapse a
    # recipe whose static int8 ranked first), so the runner-up is named too.
    ranked = [what for _, what in sorted(suspects, key=lambda s: -s[0])]
    return RUNNER_UP.join(ranked[:2])


def _suspect(item: dict, model_type: str, layers: int | None = None) -> tuple[float, str] | None:
    """(how strong, what) for one pass of a recipe dict; None if it keeps the function."""
    name = item.get("pass")
    if name == "prune_unstructured":
        sparsity = float(item.get("sparsity", 0.5))
        return sparsity, f"unstructured pruning at {sparsity:.0%} sparsity"
    if name in ("prune_mlp", "prune_heads"):
        fraction = float(item.get("fraction", 0.25))
        what = "MLP neurons" if name == "prune_mlp" else "attention heads"
        return 0.2 + fraction, f"aggressive pruning: {fraction:.0%} of the {what} removed"
    if name == "prune_layers":
        count = int(item.get("count", 2))
        # By the share dropped where the depth is known: 1 of 2 layers is the
        # worst setting a recipe can hold, 1 of 30 still more than int8 weights.
        strength = 0.25 + 1.5 * count / layers if layers else 0.1 * count
        return strength, f"{counted(count, 'whole layer')} dropped"
    if name in ("prune_wanda", "prune_sparsegpt"):
        pattern = str(item.get("pattern", "unstructured"))
        n, _, m = pattern.partition(":")
        if n.isdigit() and m.isdigit() and int(m) > 0:  # n of every m zero, whatever sparsity says
            sparsity, shape = int(n) / int(m), f"{pattern} pattern"
        else:
            sparsity, shape = float(item.get("sparsity", 0.5)), "unstructured"
        return sparsity, f"{name}: {sparsity:.0%} of the weights zeroed ({shape})"
    if name == "low_rank":
        ratio = float(item.get("rank_ratio", 0.5))
        return 1.0 - ratio, f"low rank: {ratio:.0%} of full rank kept"
    if name == "low_rank_aware":
        removed = float(item.get("param_reduction", 0.2))
        how = "SVD-LLM" if item.get("method", "svd_llm") == "svd_llm" else "plain SVD"
        return removed, f"low rank ({how}): {removed:.0%} of block-linear weights removed"
    if name == "int4_weight_only":
        group = item.get("group_size", 128)
        if item.get("method", "rtn") == "rtn":
            return 0.55, f"int4 without calibration (round to nearest, group {group}; try awq)"
        method = {"gptq": "GPTQ", "gptq_act_order": "GPTQ act-order", "awq": "AWQ"}
        return 0.45, f"int4 weights ({method.get(item['method'], item['method'])}, group {group})"
    if name == "int8_dynamic":
        from core.passes import REGISTRY

        default = REGISTRY["int8_dynamic"].smooth_alpha  # the pass's own default
        alpha = float(item.get("smooth_alpha", default))
        # SmoothQuant finds its folds by tracing and checks each one on any
        # family (core/passes/smooth_quant.py), so the layout is not a cause.
        return 0.35, f"W8A8 int8 activations (SmoothQuant alpha {alpha:g})"
    if name == "int8_weight_only":
        return 0.2, "int8 weights"
    if name == "cast":
        dtype = item.get("dtype", "")
        if dtype == "float16":
            return 0.3, "float16 cast (activations can overflow its range)"
        return 0.1, f"{dtype} cast"
    return None
