"""A student built from the teacher by the structured pruning passes, so it
starts from the teacher's own weights: whole layers dropped (the lowest
measured Block Influence first, ``prune_layers``) and/or MLP neurons removed
(``prune_mlp``). ``apply_recipe`` works on a deep copy, so the teacher is
never modified."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from core.models.loading import LoadedModel
from core.passes import REGISTRY
from core.passes.blocks import decoder_layers
from core.passes.recipe import CompressedModel, Recipe, apply_recipe
from core.progress import CancelToken, ProgressSink, ignore_progress


@dataclass(frozen=True)
class StudentShape:
    drop_layers: int = 0  # whole decoder layers removed
    mlp_remove: float = 0.0  # fraction of MLP neurons removed in every layer

    def recipe(self) -> Recipe:
        passes = []
        if self.drop_layers:
            passes.append(REGISTRY["prune_layers"](count=self.drop_layers))
        if self.mlp_remove:
            passes.append(REGISTRY["prune_mlp"](fraction=self.mlp_remove))
        if not passes:
            raise ValueError("a student needs --drop-layers and/or --mlp-remove")
        return Recipe(tuple(passes))


def build_student(
    teacher: LoadedModel,
    recipe: Recipe,
    calibration: list[torch.Tensor],
    progress: ProgressSink = ignore_progress,
    cancel: CancelToken | None = None,
) -> CompressedModel:
    """The pruned copy of ``teacher``; calibration text chooses what goes."""
    return apply_recipe(teacher, recipe, calibration, progress, cancel)


def teacher_layer_of(student_model, teacher_model) -> list[int]:
    """For each student layer, the index of the teacher layer it was copied
    from. Structured pruning keeps attention weights as they were (GPT-2's
    Conv1D turns into a Linear holding the transpose), so the first attention
    weight matrix identifies a layer exactly."""
    teacher = [_attention_weight(layer) for layer in decoder_layers(teacher_model)]
    mapping = []
    for layer in decoder_layers(student_model):
        w = _attention_weight(layer)
        match = [i for i, t in enumerate(teacher) if _same_values(w, t)]
        if len(match) != 1:
            raise ValueError("cannot match the student's layers to the teacher's")
        mapping.append(match[0])
    return mapping


def _attention_weight(layer) -> torch.Tensor:
    """An attention matrix (narrowing the MLP leaves it as it was); a layer
    without one (Mamba's mixer) is named by its first matrix, which dropping
    layers leaves as it was too."""
    matrices = [(name, p.detach()) for name, p in layer.named_parameters() if p.ndim == 2]
    attention = [p for name, p in matrices if "attn" in name or "attention" in name]
    if attention or matrices:
        return (attention or [p for _, p in matrices])[0]
    raise ValueError(
        f"cannot match the student's layers to the teacher's: "
        f"a {type(layer).__name__} holds no matrix"
    )


def _same_values(a: torch.Tensor, b: torch.Tensor) -> bool:
    if a.shape == b.shape and torch.equal(a, b):
        return True
    return a.shape == b.shape[::-1] and torch.equal(a, b.t())
