"""The configurations a search proposes, each a Recipe with a short label:

- uniform: one block quantization everywhere (int8 weight-only, or int4 at
  each group size with each method), with and without the int8 head;
- mixed: int8 on the layers a sensitivity ranking names first, int4
  elsewhere, as many int8 layers as the size limit allows (and half as many);
- pruning: layers or MLP neurons removed, then int8 or int4 (+ int8 head).

``prior`` orders candidates whose proxies tie: a calibrated int4 method is
scored by its RTN twin (``proxy_recipe``), so its siblings share one proxy;
they are then measured in the order of ``SearchSpace.int4_methods``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, replace

FAMILIES = ("uniform", "mixed", "pruning")
INT4_METHODS = ("awq", "gptq_act_order", "gptq", "rtn")


@dataclass(frozen=True)
class SearchSpace:
    """Which candidates to propose. ``int4_methods`` is also the order in
    which siblings sharing one proxy are measured: the default is the order
    of their perplexity increase on the default model at g128 and g64 (AWQ,
    then GPTQ act-order, GPTQ, RTN: benchmarks/results/int4_quality)."""

    families: tuple[str, ...] = FAMILIES
    int4_groups: tuple[int, ...] = (128, 64)
    int4_methods: tuple[str, ...] = INT4_METHODS
    int8_head: bool = True  # also try each recipe with the int8 head and embeddings
    prune_layers_fraction: float = 0.1  # of the layers, at least one
    prune_mlp_fraction: float = 0.25

    def __post_init__(self) -> None:
        unknown = sorted(set(self.families) - set(FAMILIES))
        if unknown or not self.families:
            raise ValueError(f"families: one or more of {', '.join(FAMILIES)}, got {unknown}")
        bad = sorted(set(self.int4_methods) - set(INT4_METHODS))
        if bad:
            raise ValueError(f"int4 methods: {bad[0]!r} is not one of {', '.join(INT4_METHODS)}")
        if not set(self.int4_groups) <= {32, 64, 128}:
            raise ValueError("int4 group sizes: 32, 64 or 128")


@dataclass(frozen=True)
class Candidate:
    recipe: object  # core.passes.recipe.Recipe
    label: str
    family: str
    prior: int = 0  # lower is measured first among equal proxies
    notes: tuple[str, ...] = field(default=())

    @property
    def key(self) -> str:
        """A stable name for this recipe (the same recipe, the same key)."""
        return recipe_key(self.recipe.to_dict())

    @property
    def calibrated_int4(self) -> bool:
        return any(p.name == "int4_weight_only" and p.method != "rtn" for p in self.recipe.passes)

    def proxy_recipe(self):
        """What the quality proxy builds: this recipe with every calibrated
        int4 method replaced by round-to-nearest (seconds instead of minutes;
        calibration only lowers the error, so the twin's KL is an upper
        bound in practice, not a proof)."""
        from core.passes.recipe import Recipe

        return Recipe(
            tuple(
                replace(p, method="rtn") if p.name == "int4_weight_only" else p
                for p in self.recipe.passes
            )
        )

    @property
    def proxy_is_twin(self) -> bool:
        return self.proxy_recipe() != self.recipe


def recipe_key(recipe_dict: dict) -> str:
    text = json.dumps(recipe_dict, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def layer_text(layers) -> str:
    return ",".join(str(i) for i in sorted(layers))


def has_linear_head(model) -> bool:
    """The int8 head pass needs a plain linear output head over the vocabulary."""
    from torch import nn

    get = getattr(model, "get_output_embeddings", None)
    return get is not None and type(get()) is nn.Linear


def head_options(space: SearchSpace, model) -> list:
    """None (the head as it is) and, where it applies, the int8 head pass."""
    from core.passes import REGISTRY

    heads = [None]
    if space.int8_head and has_linear_head(model):
        heads.append(REGISTRY["int8_head"]())
    return heads


def uniform_int8(head):
    """int8 weight-only on every block linear (with ``head``, if any)."""
    from core.passes import REGISTRY as R
    from core.passes.recipe import Recipe

    return Recipe(_with_head((R["int8_weight_only"](),), head))


def _with_head(passes: tuple, head) -> tuple:
    return passes + ((head,) if head is not None else ())


def _head_label(head) -> str:
    return " + int8 head" if head is not None else ""


def _int4_variants(space: SearchSpace):
    for group in space.int4_groups:
        for rank, method in enumerate(space.int4_methods):
            yield group, method, rank


def uniform_candidates(model, space: SearchSpace) -> list[Candidate]:
    from core.passes import REGISTRY as R
    from core.passes.recipe import Recipe

    out = []
    for head in head_options(space, model):
        blocks = [(R["int8_weight_only"](), "int8", 0)]
        blocks += [
            (R["int4_weight_only"](group, method), f"int4 g{group} {method}", rank)
            for group, method, rank in _int4_variants(space)
        ]
        for block, label, rank in blocks:
            recipe = Recipe(_with_head((block,), head))
            out.append(Candidate(recipe, label + _head_label(head), "uniform", rank))
    return out


def pruning_candidates(model, space: SearchSpace) -> list[Candidate]:
    """Structured pruning first, then a quantization (pruning after it is refused)."""
    from core.passes import REGISTRY as R
    from core.passes.recipe import Recipe

    layers = model.config.num_hidden_layers
    drop = max(1, round(space.prune_layers_fraction * layers))
    prunes = []
    if drop < layers:
        prunes.append((R["prune_layers"](drop), f"drop {drop} layers"))
    prunes.append((R["prune_mlp"](space.prune_mlp_fraction), f"{space.prune_mlp_fraction:.0%} MLP"))
    quantizers = [(R["int8_weight_only"](), "int8", 0)]
    if space.int4_methods:  # the first method and group: the one expected best
        group, method = space.int4_groups[0], space.int4_methods[0]
        quantizers.append((R["int4_weight_only"](group, method), f"int4 g{group} {method}", 1))
    out = []
    for head in head_options(space, model):
        for prune, prune_label in prunes:
            for quant, quant_label, rank in quantizers:
                recipe = Recipe(_with_head((prune, quant), head))
                label = f"{prune_label} + {quant_label}{_head_label(head)}"
                out.append(Candidate(recipe, label, "pruning", rank))
    return out


def mixed_recipe(sensitive: list[int], layers: int, group: int, method: str, head):
    from core.passes import REGISTRY as R
    from core.passes.recipe import Recipe

    rest = [i for i in range(layers) if i not in sensitive]
    passes = (
        R["int8_weight_only"](layers=layer_text(sensitive)),
        R["int4_weight_only"](group, method, layers=layer_text(rest)),
    )
    return Recipe(_with_head(passes, head))


def mixed_candidates(model, space: SearchSpace, ranking: list[int], fits, heads) -> list:
    """int8 on the first k layers of ``ranking`` (most sensitive first), int4
    elsewhere, with each of ``heads``: k the most that ``fits`` (a recipe ->
    bool, the size limit by the estimate) allows, and half of it. None when
    no int8 layer fits or every layer would be int8 (the uniform int8
    candidate)."""
    layers = model.config.num_hidden_layers
    out = []
    for head in heads:
        most_at: dict[int, int] = {}  # every int4 method stores the same bytes: once a group
        for group, method, rank in _int4_variants(space):
            if group not in most_at:
                most = 0
                while most < layers - 1 and fits(
                    mixed_recipe(ranking[: most + 1], layers, group, "rtn", head)
                ):
                    most += 1
                most_at[group] = most
            for k in sorted({most_at[group], most_at[group] // 2}, reverse=True):
                if k < 1:
                    continue
                recipe = mixed_recipe(ranking[:k], layers, group, method, head)
                label = f"int8 on {k} most sensitive layers + int4 g{group} {method}"
                out.append(Candidate(recipe, label + _head_label(head), "mixed", rank))
    return out
