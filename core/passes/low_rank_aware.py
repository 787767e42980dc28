"""Low-rank factorisation to a parameter budget: the slider is the fraction
of block-linear weights removed, and each layer's rank is chosen from its
own spectrum rather than one rank ratio for all.

method "svd_llm": SVD-LLM's truncation-aware whitening of each layer's
inputs with its outputs weighted by their loss gradients (core.passes.svd_llm),
both from calibration text; the singular values then estimate the loss
each rank carries, and ranks go where they carry the most per weight, across
all layers (core.passes.rank_budget): sensitive layers may stay whole while
others shrink a lot. method "svd": plain SVD of the weights under the same
budget, without calibration (ranks shared by each layer's share of its own
energy): the same parameter count, for comparison.

The weights kept equal a target computed from shapes alone, so the size
estimate's total is exact (its attention/MLP split is not: see SCOPE).
Measured on the default model (benchmarks/low_rank_quality.py): without
the gradient weighting, SVD-LLM alone at 20% removed was 7.3x the
original's dev perplexity (5.5x with one rank per layer type, SVD-LLM V1);
with it, 1.9x. Factored layers become today's low-rank pair (two
nn.Linear in an nn.Sequential), which the export already writes.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from core.models.linear_layers import (
    component_of,
    linears_to_change,
    replace_module,
)
from core.passes.base import PassConfig, PassContext, option, register
from core.passes.rank_budget import WHOLE, Shape, share_ranks

METHODS = ("svd_llm", "svd")
# Where the budget is met: over all block linears together ("model": ranks
# move between attention and MLP as their losses say) or in attention and
# MLP separately ("component"). Chosen on the dev split
# (benchmarks/results/low_rank_quality_dev_choices_cpu_2core.txt: 20% of the
# default model's block-linear weights removed, 1.90x the original's
# perplexity over the model, 3.04x per component). The price: the size
# estimate's total is exact, but its split between attention and MLP is
# the shapes-only share, not the one the calibration text will choose.
SCOPE = "model"


@register
@dataclass(frozen=True)
class LowRankAwareConfig(PassConfig):
    name = "low_rank_aware"
    kind = "low_rank"
    title = "Low-rank to a parameter budget (loss-aware SVD-LLM)"
    param_reduction: float = option(
        0.2,
        label="parameters removed",
        description=(
            "fraction of the block linears' weights removed; ranks go where the calibration "
            "text says they matter (sensitive layers may stay whole)"
        ),
        minimum=0.05,
        maximum=0.8,
        step=0.05,
    )
    method: str = option(
        "svd_llm",
        label="method",
        description=(
            "svd_llm: keep what matters for the loss on calibration text (whitened inputs, "
            "gradient-weighted outputs); svd: plain SVD of the weights, no calibration"
        ),
        choices=METHODS,
    )

    @property
    def needs_calibration(self) -> bool:  # type: ignore[override]
        return self.method == "svd_llm"

    def apply(self, model, context: PassContext):
        factorise_to_budget(model, context, self.param_reduction, self.method)
        return model

    def estimate(self, entries, model_config):
        from core.passes.size_estimate import resized

        linears = [e for e in entries if e.is_linear and not e.quantized]
        ranks = {}
        for group in _groups([(e.name, e.component, e) for e in linears]).values():
            shapes = [Shape(e.name, e.out_features, e.in_features) for e in group]
            ranks.update(share_ranks(shapes, None, self.param_reduction))
        out = []
        for e in entries:
            rank = ranks.get(e.name, WHOLE)
            if rank == WHOLE:
                out.append(e)
                continue
            first = replace(e, name=f"{e.name}.0", has_bias=False)
            second = replace(e, name=f"{e.name}.1")
            out += [resized(first, out_features=rank), resized(second, in_features=rank)]
        return out


def _groups(items) -> dict[str, list]:
    """(name, component, item) -> the items of each budget group."""
    groups: dict[str, list] = {}
    for _, component, item in items:
        groups.setdefault(component if SCOPE == "component" else "", []).append(item)
    return groups


def factorise_to_budget(
    model,
    context: PassContext,
    reduction: float,
    method: str,
    gradients: bool = True,
    damp: float | None = None,
    output_damp: float | None = None,
) -> dict[str, int]:
    """The pass's work; returns each block linear's rank (WHOLE: left dense).
    ``gradients`` (weighting outputs by loss gradients) and the dampings are
    open here so the benchmark can compare them on the dev split; without
    gradients, SVD-LLM's whitened energies are compared as each layer's
    share of its own (they are in different units across layers)."""
    from core.passes.calibration import require_calibration
    from core.passes.loss_statistics import collect_loss_statistics
    from core.passes.svd_llm import (
        factor_pair,
        output_scale,
        truncated_factors,
        whitened_spectrum,
        whitening_factor,
    )

    layers = linears_to_change(LowRankAwareConfig.name, model)
    factors, scales = {}, {}
    if method == "svd_llm":
        calibration = require_calibration(LowRankAwareConfig.name, context.calibration)

        def on_window(done: int, total: int) -> None:
            context.progress_fraction(done, total, "SVD-LLM: reading calibration text")

        grams, fisher = collect_loss_statistics(
            model, layers, calibration, context.cancel, gradients, on_window
        )
        for name, _ in layers:  # stored in float32: half the memory of the float64 factor
            context.cancel.raise_if_cancelled()
            factors[name] = whitening_factor(grams.pop(name), damp).float()
            if gradients:
                scales[name] = output_scale(fisher.pop(name), output_damp)

    energies = {}
    for index, (name, linear) in enumerate(layers):
        context.cancel.raise_if_cancelled()
        energy = whitened_spectrum(linear.weight, factors.get(name), scales.get(name))
        energies[name] = energy if scales else energy / energy.sum().clamp(min=1e-300)
        context.progress_fraction(index + 1, 2 * len(layers), "low rank: spectra")
    ranks = {}
    for group in _groups([(n, component_of(n), (n, m)) for n, m in layers]).values():
        shapes = [Shape(n, m.out_features, m.in_features) for n, m in group]
        ranks.update(share_ranks(shapes, energies, reduction))

    for index, (name, linear) in enumerate(layers):
        context.cancel.raise_if_cancelled()
        rank = ranks.get(name, WHOLE)
        if rank != WHOLE:
            first, second = truncated_factors(
                linear.weight, rank, factors.get(name), scales.get(name)
            )
            replace_module(model, name, factor_pair(linear, first, second))
        factors.pop(name, None)
        context.progress_fraction(len(layers) + index + 1, 2 * len(layers), f"low rank: {name}")
    whole = sum(1 for name, _ in layers if ranks.get(name, WHOLE) == WHOLE)
    if whole:
        context.notes.append(
            f"low_rank_aware: {whole} of {len(layers)} layers kept whole "
            "(their ranks counted most, or no rank of theirs saves weights)"
        )
    return ranks
