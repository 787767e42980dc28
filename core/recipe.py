"""A recipe: an ordered list of pass configs, with a JSON round trip that
only accepts registered pass names and known versions, and the rules that
refuse combinations which cannot work before any work starts."""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field

from core.jobs import CancelToken, ProgressSink, ignore_progress
from core.loading import LoadedModel
from core.passes import REGISTRY, PassConfig, PassContext

RECIPE_FORMAT = 1


class RecipeError(ValueError):
    """The recipe cannot be applied as written."""


@dataclass(frozen=True)
class Recipe:
    passes: tuple[PassConfig, ...] = ()

    @property
    def name(self) -> str:
        return " + ".join(p.summary() for p in self.passes) or "original"

    def to_dict(self) -> dict:
        return {"format": RECIPE_FORMAT, "passes": [p.to_dict() for p in self.passes]}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_dict(cls, data: dict) -> Recipe:
        if data.get("format") != RECIPE_FORMAT:
            raise RecipeError(f"unknown recipe format {data.get('format')!r}")
        return cls(tuple(pass_from_dict(item) for item in data.get("passes", [])))

    @classmethod
    def from_json(cls, text: str) -> Recipe:
        try:
            return cls.from_dict(json.loads(text))
        except json.JSONDecodeError as err:
            raise RecipeError(f"recipe is not valid JSON: {err}") from err

    def needs_calibration(self) -> bool:
        return any(p.needs_calibration for p in self.passes)


def pass_from_dict(item: dict) -> PassConfig:
    item = dict(item)
    name = item.pop("pass", None)
    if name not in REGISTRY:
        raise RecipeError(f"unknown pass {name!r}; known: {', '.join(sorted(REGISTRY))}")
    cls = REGISTRY[name]
    version = item.pop("version", None)
    if version != cls.version:
        raise RecipeError(f"{name} version {version} is not supported (this build: {cls.version})")
    allowed = {spec.name for spec in cls.options()}
    unknown = set(item) - allowed
    if unknown:
        raise RecipeError(f"{name}: unknown option(s) {', '.join(sorted(unknown))}")
    return cls(**item)


def validate(recipe: Recipe) -> None:
    """Refuse combinations that cannot work, with the reason."""
    names = [p.name for p in recipe.passes]
    for name in set(names):
        if names.count(name) > 1:
            raise RecipeError(f"{name} appears twice; use it once")
    quantizers = [p for p in recipe.passes if p.kind == "quantize"]
    if len(quantizers) > 1:
        raise RecipeError(
            f"two quantizations ({', '.join(p.name for p in quantizers)}): choose one"
        )
    if quantizers and recipe.passes[-1] is not quantizers[0]:
        after = recipe.passes[recipe.passes.index(quantizers[0]) + 1].name
        raise RecipeError(
            f"{after} after {quantizers[0].name}: passes cannot change quantized weights; "
            "put the quantization last"
        )
    structured = {"prune_mlp", "prune_heads", "prune_layers"}
    if "low_rank" in names and structured & set(names[names.index("low_rank") :]):
        raise RecipeError(
            "structured pruning after low_rank cannot cut factored layers; prune first"
        )
    if "prune_unstructured" in names and "low_rank" in names[names.index("prune_unstructured") :]:
        raise RecipeError("low_rank after prune_unstructured would discard the zeros; swap them")


@dataclass
class CompressedModel:
    loaded: LoadedModel
    recipe: Recipe
    notes: list[str] = field(default_factory=list)


def apply_recipe(
    loaded: LoadedModel,
    recipe: Recipe,
    calibration: list | None = None,
    progress: ProgressSink = ignore_progress,
    cancel: CancelToken | None = None,
) -> CompressedModel:
    """A new model with the recipe applied; ``loaded`` is never modified."""
    from core.description import describe

    validate(recipe)
    if recipe.needs_calibration() and not calibration:
        raise RecipeError("this recipe needs calibration text")
    context = PassContext(calibration, progress, cancel or CancelToken())
    # One deepcopy copies the config once and keeps it shared: the model, its
    # inner model and every layer hold the same object, so a pass that
    # updates it (layer_types, head counts) updates it for all of them.
    model = copy.deepcopy(loaded.model)
    for config in recipe.passes:
        context.cancel.raise_if_cancelled()
        model = config.apply(model, context)
    model.eval()
    source = f"{loaded.source} | {recipe.name}"
    description = describe(model, source, None, loaded.description.notes + context.notes)
    new = LoadedModel(model, loaded.tokenizer, source, None, description)
    return CompressedModel(new, recipe, context.notes)
