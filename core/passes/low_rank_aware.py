"""Low-rank factorisation to a parameter budget: the slider is the fraction
of block-linear weights removed, and each layer's rank is chosen from its
own spectrum rather than one rank ratio for all.

method "svd_llm": SVD-LLM's truncation-aware whitening (core.passes.svd_llm)
on the calibration text's input statistics: each layer keeps what matters
for its outputs on real text, and the ranks of a class follow the output
energy each layer would lose. method "svd": plain SVD of the weights under
the same budget and allocation, without calibration: the same parameter
count, for comparison.

Ranks are shared within classes of same-part, same-shape layers
(core.passes.rank_budget), so the size the estimate gives from shapes is
the size built. Factored layers become today's low-rank pair (two
nn.Linear in an nn.Sequential), which the export already writes.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, replace

from core.models.linear_layers import (
    block_linears,
    convert_conv1d_to_linear,
    replace_module,
    unsupported_layers_error,
)
from core.passes.base import PassConfig, PassContext, option, register
from core.passes.rank_budget import (
    allocate,
    class_key,
    even_ranks,
    linear_class,
    max_saving_rank,
    rank_pool,
)

METHODS = ("svd_llm", "svd")
# How each class's ranks are shared among its layers (core.passes.rank_budget),
# chosen on the dev split (benchmarks/low_rank_quality.py --split dev).
ALLOCATION = "relative"


@register
@dataclass(frozen=True)
class LowRankAwareConfig(PassConfig):
    name = "low_rank_aware"
    kind = "low_rank"
    title = "Low-rank to a parameter budget (SVD-LLM whitening)"
    param_reduction: float = option(
        0.2,
        label="parameters removed",
        description=(
            "fraction of the block linears' weights removed; each layer's rank follows its "
            "spectrum (layers that would not shrink stay)"
        ),
        minimum=0.05,
        maximum=0.8,
        step=0.05,
    )
    method: str = option(
        "svd_llm",
        label="method",
        description=(
            "svd_llm: keep what matters for each layer's outputs on calibration text "
            "(truncation-aware whitening); svd: plain SVD of the weights, no calibration"
        ),
        choices=METHODS,
    )

    @property
    def needs_calibration(self) -> bool:  # type: ignore[override]
        return self.method == "svd_llm"

    def apply(self, model, context: PassContext):
        return factorise_to_budget(model, context, self.param_reduction, self.method)

    def estimate(self, entries, model_config):
        from core.passes.size_estimate import resized

        classes = defaultdict(list)
        for e in entries:
            if e.is_linear and not e.quantized:
                classes[class_key(e.name, e.component, e.out_features, e.in_features)].append(e)
        shares = {}
        for (_, _, out_f, in_f), members in classes.items():
            pool = rank_pool(len(members), out_f, in_f, self.param_reduction)
            if pool is not None:  # the pool is exact; how it is shared only calibration knows
                ranks = even_ranks(pool, len(members))
                shares.update(zip((e.name for e in members), ranks, strict=True))
        out = []
        for e in entries:
            rank = shares.get(e.name)
            if rank is None:
                out.append(e)
                continue
            first = replace(e, name=f"{e.name}.0", has_bias=False)
            second = replace(e, name=f"{e.name}.1")
            out += [resized(first, in_features=e.in_features, out_features=rank)]
            out += [resized(second, in_features=rank)]
        return out


def factorise_to_budget(
    model,
    context: PassContext,
    reduction: float,
    method: str,
    allocation: str = ALLOCATION,
    damp: float | None = None,
):
    """The pass's work; ``allocation`` and ``damp`` are open here so the
    benchmark can compare them on the dev split."""
    from core.passes.calibration import collect_input_hessians, require_calibration
    from core.passes.svd_llm import DAMP, factor_pair, truncated_factors, whitening_factor

    convert_conv1d_to_linear(model)
    layers = block_linears(model)
    if not layers:
        raise unsupported_layers_error(LowRankAwareConfig.name, model)
    factors = {}
    if method == "svd_llm":
        calibration = require_calibration(LowRankAwareConfig.name, context.calibration)
        context.progress_fraction(0, 1, "SVD-LLM: collecting calibration statistics")
        grams = collect_input_hessians(model, layers, calibration, context.cancel)
        for name, _ in layers:  # stored in float32: half the memory of the float64 factor
            context.cancel.raise_if_cancelled()
            factors[name] = whitening_factor(grams.pop(name), DAMP if damp is None else damp)
            factors[name] = factors[name].float()
    ranks = _ranks(layers, factors, reduction, allocation, context)
    for index, (name, linear) in enumerate(layers):
        context.cancel.raise_if_cancelled()
        if name in ranks:
            first, second = truncated_factors(linear.weight, ranks[name], factors.get(name))
            replace_module(model, name, factor_pair(linear, first, second))
        factors.pop(name, None)
        context.progress_fraction(index + 1, len(layers), f"low rank ({method}): {name}")
    dense = len(layers) - len(ranks)
    if dense:
        context.notes.append(
            f"low_rank_aware: {dense} of {len(layers)} layers left whole "
            "(no rank of theirs would save parameters)"
        )
    return model


def _ranks(layers, factors, reduction, allocation, context) -> dict[str, int]:
    """Each factored layer's rank: every class's pool shared by spectrum."""
    from core.passes.svd_llm import whitened_spectrum

    classes = defaultdict(list)
    for name, linear in layers:
        classes[linear_class(name, linear)].append((name, linear))
    ranks: dict[str, int] = {}
    for (_, _, out_f, in_f), members in classes.items():
        pool = rank_pool(len(members), out_f, in_f, reduction)
        if pool is None:
            continue
        energies = []
        for name, linear in members if allocation != "uniform" else ():
            context.cancel.raise_if_cancelled()
            energies.append(whitened_spectrum(linear.weight, factors.get(name)))
        top = max_saving_rank(out_f, in_f)
        shares = allocate(energies, len(members), pool, top, allocation)
        ranks.update({name: r for (name, _), r in zip(members, shares, strict=True)})
    return ranks
