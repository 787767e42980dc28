"""The Sensitivity job: how much each transformer layer (or each part of
it) hurts when it alone is compressed by a probe pass (int4 RTN, int8 ...).
Each cell is the probe scoped to that layer (core.passes.scope), scored by
KL divergence to the original and the paired perplexity ratio on the dev
split (choosing where to spend bits is choosing a default: never on the
report split). Cells stream as they are measured, so a map can fill live
and a cancel keeps what was measured.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator
from dataclasses import dataclass

from core.progress import CancelToken, Progress, ProgressSink, ignore_progress


@dataclass(frozen=True)
class SensitivityRequest:
    original: object  # core.models.loading.LoadedModel
    probe: object  # a ScopedConfig pass (its own scope is replaced cell by cell)
    parts: tuple[str, ...] = ()  # () : whole layers; else one cell per layer and part
    windows: int = 4  # dev-split windows each cell is scored on
    settings: object = None  # ExperimentSettings for a probe that calibrates


@dataclass(frozen=True)
class SensitivityCell:
    layer: int
    part: str  # "" : the whole layer
    mean_kl: float  # nats per token, KL(original || probed)
    ppl_ratio: float  # probed / original perplexity on the same dev tokens
    done: int
    total: int


@dataclass(frozen=True)
class SensitivityMap:
    probe: dict  # the probe pass, as a recipe stores it
    protocol: str  # what the cells were scored on
    cells: tuple[SensitivityCell, ...]

    def most_sensitive_layers(self, count: int) -> list[int]:
        """The ``count`` layers whose cells cost the most KL (summed over parts)."""
        by_layer: dict[int, float] = {}
        for cell in self.cells:
            by_layer[cell.layer] = by_layer.get(cell.layer, 0.0) + cell.mean_kl
        return sorted(by_layer, key=by_layer.get, reverse=True)[:count]


def check_probe(probe) -> None:
    """Refuse, before any model loads, a pass that cannot be limited to one layer."""
    if not hasattr(probe, "scope"):
        raise ValueError(f"{probe.name} cannot be limited to one layer")


def sensitivity(
    request: SensitivityRequest,
    progress: ProgressSink = ignore_progress,
    cancel: CancelToken | None = None,
) -> Iterator[object]:
    """Yield a SensitivityCell per layer (and part), then the SensitivityMap."""
    from core.evaluate.fidelity import fidelity_to_logits, reference_logits
    from core.evaluate.perplexity import PerplexityProtocol, perplexity_windows
    from core.jobs.experiment import ExperimentSettings, read_calibration
    from core.jobs.tasks import task_for
    from core.passes.recipe import Recipe, apply_recipe

    cancel = cancel or CancelToken()
    original, probe = request.original, request.probe
    if task_for(original).name != "causal-lm":
        raise ValueError("the sensitivity map scores next-token predictions: a causal LM only")
    check_probe(probe)
    layers = original.model.config.num_hidden_layers
    protocol = PerplexityProtocol(split="dev", quick_windows=request.windows)
    windows = perplexity_windows(original.tokenizer, protocol)[: request.windows]
    calibration = None
    if probe.needs_calibration:
        calibration = read_calibration(
            original.tokenizer, request.settings or ExperimentSettings(), progress
        )
    progress(Progress("Sensitivity: the original's logits on the dev windows", None))
    reference = reference_logits(original.model, windows)  # once, not once a cell
    parts = request.parts or ("",)
    total, cells = layers * len(parts), []
    for layer in range(layers):
        for part in parts:
            cancel.raise_if_cancelled()
            progress(Progress(f"Sensitivity: layer {layer} {part}".strip(), len(cells) / total))
            cell_probe = dataclasses.replace(probe, layers=str(layer), parts=part)
            built = apply_recipe(original, Recipe((cell_probe,)), calibration, cancel=cancel)
            scores = [
                fidelity_to_logits(logits, built.loaded.model, window)
                for logits, window in zip(reference, windows, strict=True)
            ]
            del built  # one probed copy at a time
            kl = sum(s.kl for s in scores) / len(scores)
            ratio = math.exp(sum(s.nll_delta for s in scores) / len(scores))
            cells.append(SensitivityCell(layer, part, kl, ratio, len(cells) + 1, total))
            yield cells[-1]
    yield SensitivityMap(
        probe.to_dict(),
        f"KL and paired perplexity ratio over {len(windows)} dev-split windows of "
        f"{protocol.context_tokens} tokens, one layer{' part' if request.parts else ''} "
        "compressed at a time",
        tuple(cells),
    )
