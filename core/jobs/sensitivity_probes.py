"""Sensitivity probes that are not a scoped quantization: removing 25% of
one layer's MLP neurons and dropping the layer. Neither pass takes a layer
scope (``prune_mlp`` and ``prune_layers`` act on every layer or choose
their own), so each probe reuses the pass's own code on the one layer under
test: ``prune_mlp``'s neuron importance, measured once on the original (a
layer's importance depends only on the layers before it, all original in
every probed copy, so it is what ``prune_mlp`` itself would measure), and
``prune_layers``' removal of a layer.

A probe has fixed columns: the MLP probe one ("mlp"), the drop one ("":
the whole layer). No per-layer override exists for either pass in a
recipe, so the window's click on such a cell says so instead.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import ClassVar


@dataclass(frozen=True)
class LayerProbe:
    """A change of one decoder layer that is not a ScopedConfig pass."""

    name: ClassVar[str]
    columns: ClassVar[tuple[str, ...]]  # the map's columns ("" : the whole layer)
    needs_calibration: ClassVar[bool] = False
    has_override: ClassVar[bool] = False  # no per-layer recipe override exists for it

    def to_dict(self) -> dict:
        raise NotImplementedError

    def summary(self) -> str:
        raise NotImplementedError

    def check(self, model) -> None:
        """Refuse, in one line and before any work, a model the probe cannot change."""

    def measure(self, model, calibration, context) -> object:
        """What every cell needs, measured once on the original (never written)."""
        return None

    def apply(self, probed, layer: int, measured, context):
        """Change decoder layer ``layer`` of ``probed`` (its own copy of that layer)."""
        raise NotImplementedError


def _structural_copy(model):
    """The model's modules copied, every tensor shared: a pass may replace
    modules of it (GPT-2's Conv1D -> Linear) without touching the original."""
    shared = {id(t): t for t in [*model.parameters(), *model.buffers()]}
    return copy.deepcopy(model, memo=shared)


@dataclass(frozen=True)
class PruneMlpProbe(LayerProbe):
    name = "prune_mlp"
    columns = ("mlp",)
    needs_calibration = True
    fraction: float = 0.25

    def to_dict(self) -> dict:
        from core.passes.prune_mlp import PruneMlpConfig

        return {"pass": self.name, "version": PruneMlpConfig.version, "fraction": self.fraction}

    def summary(self) -> str:
        return f"prune_mlp(fraction={self.fraction}) on one layer"

    def check(self, model) -> None:
        from core.passes.blocks import decoder_layers, mlp_parts
        from core.passes.prune_mlp import PruneMlpConfig

        PruneMlpConfig(self.fraction)  # its range checks, in its words
        mlp_parts(_one_layer_as_linear(decoder_layers(model)[0]))  # an unknown MLP: one line

    def measure(self, model, calibration, context):
        from core.passes.blocks import decoder_layers, prepare_for_structured_pruning
        from core.passes.prune_mlp import measure_neuron_importance

        view = _structural_copy(model)
        prepare_for_structured_pruning(view)  # GPT-2: Linear copies in the view only
        return measure_neuron_importance(view, decoder_layers(view), calibration, context)

    def apply(self, probed, layer: int, measured, context):
        from core.passes.blocks import decoder_layers, mlp_parts
        from core.passes.prune_mlp import remove_neurons

        block = decoder_layers(probed)[layer]
        _one_layer_as_linear(block, in_place=True)
        width = mlp_parts(block)[1].in_features
        remove_neurons(probed, block, measured[layer], width - round(self.fraction * width))
        return probed


def _one_layer_as_linear(block, in_place: bool = False):
    """``block`` with GPT-2's Conv1D as Linear (new tensors; a copy unless in_place)."""
    from core.models.linear_layers import convert_conv1d_to_linear

    block = block if in_place else _structural_copy(block)
    convert_conv1d_to_linear(block)
    return block


@dataclass(frozen=True)
class DropLayerProbe(LayerProbe):
    name = "drop_layer"
    columns = ("",)

    def to_dict(self) -> dict:
        from core.passes.prune_layers import PruneLayersConfig

        return {"pass": "prune_layers", "version": PruneLayersConfig.version, "drop": "this layer"}

    def summary(self) -> str:
        return "drop the layer (prune_layers on one layer)"

    def check(self, model) -> None:
        from core.passes.blocks import decoder_layers

        if len(decoder_layers(model)) < 2:
            raise ValueError("drop_layer: the model has one decoder layer; dropping it leaves none")

    def apply(self, probed, layer: int, measured, context):
        from core.passes.blocks import decoder_layers
        from core.passes.prune_layers import drop_layers

        drop_layers(probed, decoder_layers(probed), {layer})
        return probed


def probe_from_dict(item: dict):
    """A probe from a pass's dict (as ``workbench sensitivity --probe`` or the
    window gives it): ``prune_mlp`` and ``prune_layers`` become layer probes,
    any other pass must be one that can be limited to one layer."""
    from core.passes.recipe import RecipeError, pass_from_dict

    name = item.get("pass")
    if name == "prune_layers":
        extra = sorted(set(item) - {"pass", "version"})
        if extra:
            raise RecipeError(
                f"prune_layers as a probe drops the layer under test; {extra[0]} does not apply"
            )
        pass_from_dict(item)  # its version check
        return DropLayerProbe()
    config = pass_from_dict(item)
    if name == "prune_mlp":
        return PruneMlpProbe(config.fraction)
    if not hasattr(config, "scope"):
        raise ValueError(
            f"{config.name} cannot be limited to one layer (probes: a scoped quantization, "
            "prune_mlp, prune_layers)"
        )
    return config


def columns_of(probe, parts: tuple[str, ...]) -> tuple[str, ...]:
    """The map's columns for ``probe`` and the asked ``parts`` ("" : the whole
    layer); a layer probe has its own and refuses others in one line."""
    if isinstance(probe, LayerProbe):
        if parts and tuple(parts) != probe.columns:
            shown = probe.columns[0] or "the whole layer"
            raise ValueError(f"{probe.name}: one cell per layer ({shown}); parts do not apply")
        return probe.columns
    return tuple(parts) or ("",)
