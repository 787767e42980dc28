"""One layer compressed, the rest the original's, without copying the model:
what each cell of the sensitivity map runs.

``record_original`` runs the original once per window and keeps what every
cell needs: each decoder layer's output and the original's top-k
next-token distributions (core.evaluate.top_k_reference). ``probed_copy``
copies the model's modules but shares every tensor outside the layer under
test, so only that layer's weights are copied (a probe pass may replace or
fold them; the original's are never written). ``scored`` then runs the copy
with the layers before the probed one replaced by the recorded outputs:
they are the original's, unchanged, so their outputs are exactly those
recorded and computing them again would only cost time (on average half
the blocks).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn

from core.evaluate.top_k_reference import TopKReference, WindowScore
from core.passes.blocks import decoder_layers, module_path


@dataclass(frozen=True)
class OriginalRecord:
    windows: list  # token windows [positions]
    references: list  # a TopKReference per window
    layer_outputs: list  # [layer][window]: what each decoder layer returned


def _logits(model, window: torch.Tensor) -> torch.Tensor:
    device = next(model.parameters()).device
    ids = window.to(device).unsqueeze(0)
    return model(input_ids=ids, use_cache=False).logits[0].float()


@torch.inference_mode()
def record_original(model, windows: list, top_k: int, cancel=None) -> OriginalRecord:
    layers = decoder_layers(model)
    outputs: list[list] = [[] for _ in layers]
    hooks = [  # the last layer's output is never replayed
        layer.register_forward_hook(lambda _m, _a, out, i=i: outputs[i].append(out))
        for i, layer in enumerate(layers[:-1])
    ]
    references = []
    try:
        for window in windows:
            if cancel is not None:
                cancel.raise_if_cancelled()
            references.append(TopKReference.of(_logits(model, window), window, top_k))
    finally:
        for hook in hooks:
            hook.remove()
    return OriginalRecord(list(windows), references, outputs)


def probed_copy(model: nn.Module, layer: int) -> nn.Module:
    """A copy of ``model`` whose tensors are the original's except those of
    decoder layer ``layer``, which are its own."""
    prefix = f"{module_path(model, decoder_layers(model))}.{layer}."
    shared = {
        id(tensor): tensor
        for name, tensor in [*model.named_parameters(), *model.named_buffers()]
        if not name.startswith(prefix)
    }
    return copy.deepcopy(model, memo=shared)


class _Replay(nn.Module):
    """Stands in for unchanged decoder layers: returns what the original's
    layer just before the probed one returned on the window being scored."""

    def __init__(self, outputs: list) -> None:
        super().__init__()
        self.outputs = outputs
        self.window = 0

    def forward(self, *_args, **_kwargs):
        out = self.outputs[self.window]
        if isinstance(out, tuple):  # a clone: the next layer may not write the record
            return tuple(t.clone() if isinstance(t, torch.Tensor) else t for t in out)
        return out.clone()


@torch.inference_mode()
def scored(probed: nn.Module, layer: int, record: OriginalRecord, cancel=None) -> list[WindowScore]:
    """Each window's KL and NLL change of ``probed`` (only ``layer`` changed)
    against the original, computing only the layers from ``layer`` on."""
    layers = decoder_layers(probed)
    replays = []
    if layer > 0:
        # Every earlier layer returns the output of the one just before the
        # probed layer: the input of the probed layer is all that matters.
        replay = _Replay(record.layer_outputs[layer - 1])
        for i in range(layer):
            layers[i] = replay
        replays.append(replay)
    scores = []
    pairs = zip(record.windows, record.references, strict=True)
    for index, (window, reference) in enumerate(pairs):
        if cancel is not None:
            cancel.raise_if_cancelled()
        for replay in replays:
            replay.window = index
        scores.append(reference.score(_logits(probed, window), window))
    return scores
