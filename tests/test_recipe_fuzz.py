"""Fuzzing the recipe loader: whatever JSON (or text) it is given, it returns a
recipe that validate() accepts and that holds only well-typed, finite, in-range
options, or it raises RecipeError; never any other exception."""

from __future__ import annotations

import json
import math

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.passes import REGISTRY
from core.passes.recipe import Recipe, RecipeError, validate

# No example database: a test run leaves no .hypothesis folder in the tree.
FUZZ = settings(
    max_examples=200, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)

scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(10**40), max_value=10**40)
    | st.floats()  # NaN and infinities included
    | st.text(max_size=20)
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner),
    max_leaves=12,
)


def valid_value(spec):
    """Values the option accepts (choices, or its range)."""
    if spec.choices:
        return st.sampled_from(spec.choices)
    if spec.type == "int":
        return st.integers(int(spec.minimum), int(spec.maximum))
    if spec.name == "layers":  # a scope: indices and ranges
        ranges = st.tuples(st.integers(0, 40), st.integers(0, 5)).map(lambda r: f"{r[0]}-{sum(r)}")
        return st.lists(st.integers(0, 40).map(str) | ranges, max_size=3).map(",".join)
    if spec.name == "parts":
        from core.passes.scope import PARTS

        return st.lists(st.sampled_from(PARTS), max_size=3, unique=True).map(",".join)
    return st.floats(spec.minimum, spec.maximum)


@st.composite
def valid_pass(draw):
    cls = REGISTRY[draw(st.sampled_from(sorted(REGISTRY)))]
    item = {"pass": cls.name, "version": cls.version}
    for spec in cls.options():
        if draw(st.booleans()):
            item[spec.name] = draw(valid_value(spec))
    return item


valid_recipes = st.lists(valid_pass(), max_size=4).map(lambda p: {"format": 1, "passes": p})


@st.composite
def near_recipes(draw):
    """Recipe-shaped dicts where any part may be swapped for arbitrary JSON."""

    def maybe(valid):
        return draw(st.one_of(valid, json_values) if draw(st.booleans()) else valid)

    passes = []
    for item in draw(st.lists(valid_pass(), max_size=3)):
        item = {key: maybe(st.just(value)) for key, value in item.items()}
        if draw(st.booleans()):
            item[draw(st.text(max_size=8))] = draw(json_values)
        passes.append(maybe(st.just(item)))
    return maybe(st.just({"format": maybe(st.just(1)), "passes": maybe(st.just(passes))}))


@st.composite
def mutated_recipes(draw):
    """A valid recipe with one leaf (an option, a name, a version) replaced."""
    data = draw(valid_recipes.filter(lambda r: r["passes"]))
    item = draw(st.sampled_from(data["passes"]))
    key = draw(st.sampled_from(sorted(item)))
    item[key] = draw(json_values)
    return data


def loads_or_refuses(load) -> None:
    """``load()`` either gives a recipe that passes every check, or raises RecipeError."""
    try:
        recipe = load()
        validate(recipe)
    except RecipeError:
        return
    for config in recipe.passes:
        for spec in config.options():
            value = getattr(config, spec.name)
            assert type(value) is type(spec.default), (config, spec.name)
            if isinstance(value, float):
                assert math.isfinite(value)
            if spec.minimum is not None:
                assert spec.minimum <= value <= spec.maximum
            if spec.choices:
                assert value in spec.choices
    assert Recipe.from_json(recipe.to_json()) == recipe


@FUZZ
@given(json_values)
def test_any_json_value(value):
    loads_or_refuses(lambda: Recipe.from_dict(value))
    loads_or_refuses(lambda: Recipe.from_json(json.dumps(value)))


@FUZZ
@given(near_recipes())
def test_recipes_with_any_part_replaced(data):
    loads_or_refuses(lambda: Recipe.from_dict(data))
    loads_or_refuses(lambda: Recipe.from_json(json.dumps(data)))


@FUZZ
@given(mutated_recipes())
def test_valid_recipes_with_one_leaf_mutated(data):
    loads_or_refuses(lambda: Recipe.from_json(json.dumps(data)))


@FUZZ
@given(st.text(max_size=200))
def test_any_text(text):
    loads_or_refuses(lambda: Recipe.from_json(text))


@FUZZ
@given(valid_recipes)
def test_valid_recipes_load(data):
    """The generators above do reach accepted recipes (else the fuzz above would
    only ever test refusals): a recipe built from valid values loads, unless it
    breaks a combination rule, which validate() names."""
    recipe = Recipe.from_json(json.dumps(data))
    assert len(recipe.passes) == len(data["passes"])
    loads_or_refuses(lambda: recipe)
