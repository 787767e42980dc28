"""A recipe: an ordered list of pass configs, with a JSON round trip that
only accepts registered pass names and known versions, and the rules that
refuse combinations which cannot work before any work starts."""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from pathlib import Path

from core.message_text import shown
from core.models.loading import LoadedModel
from core.passes import REGISTRY, PassConfig, PassContext
from core.passes.base import OptionError
from core.progress import CancelToken, ProgressSink, ignore_progress

RECIPE_FORMAT = 1
# A real recipe is a few hundred characters; the cap keeps a wrong file (a
# model, /dev/zero) from being read into memory whole.
MAX_RECIPE_BYTES = 1_000_000


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
        """A recipe from its dict form; anything else than exactly that form
        (types, ranges, keys) raises RecipeError naming what is wrong."""
        if not isinstance(data, dict):
            raise RecipeError(
                f'a recipe is a JSON object {{"format": 1, "passes": [...]}}, got {_kind(data)}'
            )
        unknown = set(data) - {"format", "passes"}
        if unknown:
            raise RecipeError(f"unknown recipe key(s) {_names(unknown)}; known: format, passes")
        fmt = data.get("format")
        if type(fmt) is not int or fmt != RECIPE_FORMAT:  # type(): true == 1 in Python
            raise RecipeError(f"unknown recipe format {shown(fmt)} (this build reads 1)")
        passes = data.get("passes", [])
        if not isinstance(passes, (list, tuple)):
            raise RecipeError(f"a recipe's passes are a JSON array, got {_kind(passes)}")
        return cls(tuple(pass_from_dict(item) for item in passes))

    @classmethod
    def from_json(cls, text: str) -> Recipe:
        if not isinstance(text, str):
            raise RecipeError(f"a recipe is JSON text, got {_kind(text)}")
        if len(text) > MAX_RECIPE_BYTES:
            raise RecipeError(
                f"recipe is {len(text):,} characters; a recipe is at most {MAX_RECIPE_BYTES:,}"
            )
        try:
            data = json.loads(
                text, parse_constant=_refuse_constant, object_pairs_hook=_refuse_duplicate_keys
            )
        except RecipeError:  # NaN or Infinity, or a key given twice
            raise
        except json.JSONDecodeError as err:
            raise RecipeError(f"recipe is not valid JSON: {err}") from err
        except RecursionError as err:  # the C decoder recurses once per bracket
            raise RecipeError("recipe JSON is nested too deeply") from err
        except ValueError as err:  # an integer past Python's 4300-digit limit
            raise RecipeError("recipe holds a number with too many digits") from err
        return cls.from_dict(data)

    @classmethod
    def from_file(cls, path) -> Recipe:
        """Read a recipe file: at most MAX_RECIPE_BYTES, UTF-8 (a BOM is allowed)."""
        import stat

        try:
            # A FIFO or device would block open() or read forever: only a regular file.
            if Path(path).exists() and not stat.S_ISREG(Path(path).stat().st_mode):
                raise RecipeError(f"cannot read recipe {shown(str(path), 200)}: it is not a file")
            with open(path, "rb") as f:
                data = f.read(MAX_RECIPE_BYTES + 1)
        except OSError as err:
            raise RecipeError(
                f"cannot read recipe {shown(str(path), 200)}: {err.strerror}"
            ) from err
        if len(data) > MAX_RECIPE_BYTES:
            raise RecipeError(
                f"recipe {shown(str(path), 200)} is over {MAX_RECIPE_BYTES:,} bytes; "
                "a recipe is a small JSON file"
            )
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as err:
            raise RecipeError(f"recipe {shown(str(path), 200)} is not UTF-8 text") from err
        return cls.from_json(text)

    def needs_calibration(self) -> bool:
        return any(p.needs_calibration for p in self.passes)


def pass_from_dict(item: dict) -> PassConfig:
    if not isinstance(item, dict):
        raise RecipeError(
            f'each pass is a JSON object like {{"pass": "prune_mlp", "version": 1}}, '
            f"got {_kind(item)}"
        )
    item = dict(item)
    name = item.pop("pass", None)
    if not isinstance(name, str) or name not in REGISTRY:
        raise RecipeError(f"unknown pass {shown(name)}; known: {', '.join(sorted(REGISTRY))}")
    cls = REGISTRY[name]
    version = item.pop("version", None)
    readable = (*cls.read_versions, cls.version)
    if type(version) is not int or version not in readable:
        raise RecipeError(
            f"{name} version {shown(version)} is not supported "
            f"(this build reads {', '.join(str(v) for v in readable)})"
        )
    allowed = {spec.name for spec in cls.options()}
    unknown = set(item) - allowed
    if unknown:
        known = ", ".join(sorted(allowed)) or "none"
        raise RecipeError(f"{name}: unknown option(s) {_names(unknown)}; known: {known}")
    try:
        return cls(**(item if version == cls.version else cls.upgrade(version, item)))
    except OptionError as err:
        raise RecipeError(str(err)) from err


def _kind(value) -> str:
    """The JSON name of ``value``'s type, for messages."""
    kinds = {bool: "true/false", int: "a number", float: "a number", str: "a string"}
    kinds |= {list: "an array", tuple: "an array", dict: "an object", type(None): "null"}
    return kinds.get(type(value), type(value).__name__)


def _names(keys) -> str:
    return ", ".join(sorted(shown(k) for k in keys)[:5]) + (" ..." if len(keys) > 5 else "")


def _refuse_constant(name: str):
    raise RecipeError(f"recipe holds {name}; every number must be finite")


def _refuse_duplicate_keys(pairs: list) -> dict:
    """A key given twice ("fraction": 0.1, "fraction": 0.5) would silently take
    the last; the recipe's author meant one of them."""
    data = {}
    for key, value in pairs:
        if key in data:
            raise RecipeError(f"recipe gives {shown(key)} twice in one object; give it once")
        data[key] = value
    return data


def validate(recipe: Recipe) -> None:
    """Refuse combinations that cannot work, with the reason."""
    names = [p.name for p in recipe.passes]
    for config in recipe.passes:
        problem = config.conflict()
        if problem:
            raise RecipeError(problem)
    quantizers = [p for p in recipe.passes if p.kind == "quantize"]
    for name in set(names):  # a quantization may recur on other layers (checked below)
        if names.count(name) > 1 and name not in {p.name for p in quantizers}:
            raise RecipeError(f"{name} appears twice; use it once")
    # Several quantizations only on disjoint layers or parts (int8 where the
    # model is sensitive, int4 elsewhere); an unscoped one covers everything.
    # Each scope parsed once: re-parsing it per pair made a recipe of 2,000
    # scoped passes take minutes.
    scopes = [getattr(p, "scope", None) for p in quantizers]
    for i, first in enumerate(quantizers):
        for j in range(i + 1, len(quantizers)):
            second, pair = quantizers[j], (scopes[i], scopes[j])
            if None in pair or pair[0].overlaps(pair[1]):
                raise RecipeError(
                    f"two quantizations of the same layers ({first.summary()}, "
                    f"{second.summary()}): give each its own layers or parts"
                )
    # The head quantizer touches only the head and embedding, so it may stand
    # beside a block quantization, before or after it; nothing else may
    # follow either (it would change quantized weights or their dtype).
    for first in [*quantizers[:1], *(p for p in recipe.passes if p.kind == "quantize_head")]:
        later = recipe.passes[recipe.passes.index(first) + 1 :]
        blocking = next((p for p in later if p.kind not in ("quantize", "quantize_head")), None)
        if blocking is not None:
            raise RecipeError(
                f"{blocking.name} after {first.name}: passes cannot change quantized weights; "
                "put the quantization last"
            )
    # Both factorisations (low_rank, low_rank_aware) by their kind: each
    # replaces a Linear by a pair, which no later pass but a quantizer reads.
    factored = [p for p in recipe.passes if p.kind == "low_rank"]
    if len(factored) > 1:
        raise RecipeError(
            f"{factored[0].name} and {factored[1].name} both factorise the layers; use one"
        )
    if factored:
        at = recipe.passes.index(factored[0])
        structured = {"prune_mlp", "prune_heads", "prune_layers"}
        if blocking := next((p for p in recipe.passes[at:] if p.name in structured), None):
            raise RecipeError(
                f"{blocking.name} after {factored[0].name} cannot cut factored layers; prune first"
            )
        for zeros in ("prune_unstructured", "prune_wanda", "prune_sparsegpt"):
            if zeros in names[:at]:
                raise RecipeError(
                    f"{factored[0].name} after {zeros} would discard the zeros; swap them"
                )
    from core.passes.heal import heal_problem

    problem = heal_problem(names)
    if problem:
        raise RecipeError(problem)


@dataclass
class CompressedModel:
    loaded: LoadedModel
    recipe: Recipe  # as applied: what a budget decided is recorded (heal's steps)
    notes: list[str] = field(default_factory=list)
    artifact: dict = field(default_factory=dict)  # what checks a rebuild (heal's weights)


def apply_recipe(
    loaded: LoadedModel,
    recipe: Recipe,
    calibration: list | None = None,
    progress: ProgressSink = ignore_progress,
    cancel: CancelToken | None = None,
    heal=None,
) -> CompressedModel:
    """A new model with the recipe applied; ``loaded`` is never modified.
    ``heal`` is the job's training step for a heal pass (core.jobs.heal),
    distilling from ``loaded``; the returned recipe records what it did."""
    from core.models.description import describe

    validate(recipe)
    check_layers_exist(recipe, loaded.model)  # before any pass runs
    if recipe.needs_calibration() and not calibration:
        raise RecipeError("this recipe needs calibration text")
    context = PassContext(calibration, progress, cancel or CancelToken(), heal=heal)
    # One deepcopy copies the config once and keeps it shared: the model, its
    # inner model and every layer hold the same object, so a pass that
    # updates it (layer_types, head counts) updates it for all of them.
    model = copy.deepcopy(loaded.model)
    applied = []
    for config in recipe.passes:
        context.cancel.raise_if_cancelled()
        context.as_applied = None
        model = _applied(config, model, context)
        applied.append(context.as_applied or config)
    recipe = Recipe(tuple(applied))
    model.eval()
    if recipe.passes:
        check_runs(model, recipe.name)
    source = f"{loaded.source} | {recipe.name}"
    description = describe(model, source, None, loaded.description.notes + context.notes)
    new = LoadedModel(model, loaded.tokenizer, source, None, description)
    return CompressedModel(new, recipe, context.notes, context.artifact)


def _applied(config, model, context):
    """``config.apply``, with a failed factorisation (SVD, Cholesky: NaN or
    infinite weights or activations) as one line naming the pass."""
    import torch

    from core.errors import UnsupportedModelError
    from core.message_text import first_line

    try:
        return config.apply(model, context)
    except torch.linalg.LinAlgError as err:
        raise UnsupportedModelError(
            f"{config.name}: its linear algebra failed ({first_line(err, 160)}); the weights or "
            "the calibration activations hold values that are not numbers (NaN or infinite)?"
        ) from err


def check_layers_exist(recipe: Recipe, model) -> None:
    """Refuse, before any pass runs, a pass scoped to layers the model does
    not have (a pass after prune_layers is checked again when it runs: the
    count it sees may be smaller then)."""
    from core.passes.base import ScopedConfig

    count = getattr(getattr(model, "config", None), "num_hidden_layers", None)
    for config in recipe.passes:  # other passes' "scope" is an option of their own
        if isinstance(config, ScopedConfig) and isinstance(count, int):
            config.scope.check_layers(config.name, count)


def check_runs(model, name: str) -> None:
    """One forward pass of two tokens on the built model. A family's own
    forward can reach into a layer a pass replaced (Mamba's reads
    ``lm_head.weight.dtype``; an int8 head has no float weight), which
    would otherwise fail at the first benchmarked token with a traceback;
    here it is one line naming the recipe, before anything is measured."""
    import torch

    from core.errors import UnsupportedModelError
    from core.message_text import first_line

    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    ids = torch.tensor([[1, 2]], device=device)
    try:
        with torch.no_grad():
            model(input_ids=ids)
    except torch.OutOfMemoryError:
        raise
    except (AttributeError, RuntimeError, TypeError, ValueError, IndexError) as err:
        raise UnsupportedModelError(
            f"{name}: the compressed {type(model).__name__} does not run "
            f"({type(err).__name__}: {first_line(err, 200)}); this family does not take the recipe"
        ) from err
