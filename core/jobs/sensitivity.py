"""The Sensitivity job: how much each transformer layer (or each part of
it) hurts when it alone is compressed by a probe pass (int4 RTN, int8
...), loses 25% of its MLP neurons or is dropped (core/jobs/sensitivity_probes.py).
Each cell is the probe scoped to that layer (core.passes.scope), scored by
KL divergence to the original (over the original's top-k next tokens and
one bucket for the rest, cached once) and the paired perplexity ratio on
the dev split (choosing where to spend bits is choosing a default: never on
the report split). Cells stream as they are measured, so a map can fill
live and a cancel keeps what was measured.

Only the layer under test is copied and compressed, and the layers before
it are not run again (core/jobs/layer_probe.py). With a store, each cell is
appended the moment it is measured and a later run of the same model,
probe and protocol skips the cells already there (resumable).
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass

from core.data.texts import NEWS
from core.progress import CancelToken, Progress, ProgressSink, ignore_progress

# A cell may compress a component, several parts of each layer at once.
COMPONENTS = {"attention": "q,k,v,o,qkv", "mlp": "gate,up,down,gate_up"}
TOP_K = 256  # the original's most likely tokens kept per position for KL (see DEVELOPERS.md)
CONTEXT_TOKENS = 512  # tokens per dev window (fewer for a model with a shorter context)
SCORING = "top-k KL + tail bucket, paired NLL; v1"  # in the store key: a change re-measures


@dataclass(frozen=True)
class SensitivityRequest:
    original: object  # core.models.loading.LoadedModel
    # a ScopedConfig pass (its own scope is replaced cell by cell) or a
    # core.jobs.sensitivity_probes.LayerProbe (prune_mlp, drop the layer)
    probe: object
    parts: tuple[str, ...] = ()  # () : whole layers; else a cell per layer and part/component
    # (a LayerProbe has its own columns: () or exactly those)
    windows: int = 4  # dev-split windows each cell is scored on
    settings: object = None  # ExperimentSettings: its bundled text is scored and calibrated on
    store: object = None  # a SensitivityStore: its cells are skipped, new ones appended
    top_k: int = TOP_K


@dataclass(frozen=True)
class SensitivityCell:
    layer: int
    part: str  # "" : the whole layer; a part (q, down ...) or a component (attention, mlp)
    mean_kl: float  # nats per token, KL(original || probed) over top k + tail
    ppl_ratio: float  # probed / original perplexity on the same dev tokens
    done: int
    total: int


@dataclass(frozen=True)
class SensitivityResumed:
    """Cells of this map measured earlier and read back from the store."""

    cells: tuple[SensitivityCell, ...]
    total: int


@dataclass(frozen=True)
class SensitivityMap:
    probe: dict  # the probe pass, as a recipe stores it
    protocol: str  # what the cells were scored on
    cells: tuple[SensitivityCell, ...]
    seconds: float = 0.0  # this run's time; cells read from the store took none of it
    resumed: int = 0  # how many cells came from the store

    def most_sensitive_layers(self, count: int) -> list[int]:
        """The ``count`` layers whose cells cost the most KL (summed over parts)."""
        by_layer: dict[int, float] = {}
        for cell in self.cells:
            by_layer[cell.layer] = by_layer.get(cell.layer, 0.0) + cell.mean_kl
        return sorted(by_layer, key=by_layer.get, reverse=True)[:count]


def check_probe(probe) -> None:
    """Refuse, before any model loads, a pass that cannot be limited to one layer."""
    from core.jobs.sensitivity_probes import LayerProbe

    if not hasattr(probe, "scope") and not isinstance(probe, LayerProbe):
        raise ValueError(f"{probe.name} cannot be limited to one layer")
    if getattr(probe, "layers", "") or getattr(probe, "parts", ""):  # the map sets both per cell
        raise ValueError(
            f"{probe.name}: a probe takes no layers or parts of its own; the map compresses "
            "each layer (and each part given with --parts) in turn"
        )
    for field, nothing in NO_CHANGE.items():
        if getattr(probe, field, None) == nothing and not _pattern(probe):
            raise ValueError(
                f"{probe.name}:{field}={nothing:g} changes nothing, so every cell would "
                "measure 0; give the probe a strength"
            )


# A probe setting that leaves every layer as it was (a sweep mapped
# prune_mlp:fraction=0: every KL 0, stored as a measurement).
NO_CHANGE = {"fraction": 0, "sparsity": 0, "param_reduction": 0, "count": 0, "rank_ratio": 1}


def _pattern(probe) -> bool:
    """An n:m pattern sets the zeros whatever the sparsity says."""
    return ":" in str(getattr(probe, "pattern", ""))


def parse_cells(text: str) -> tuple[str, ...]:
    """ "q,down" or "attention,mlp" -> the map's columns; "" -> whole layers.
    An unknown name is refused in one line."""
    from core.passes.scope import PARTS

    names = [piece.strip() for piece in text.split(",") if piece.strip()]
    for name in names:
        if name not in PARTS and name not in COMPONENTS:
            known = ", ".join([*COMPONENTS, *PARTS])
            raise ValueError(f"parts: {name!r} is not one of {known}")
    return tuple(dict.fromkeys(names))


def protocol_of(request: SensitivityRequest, context_tokens: int = CONTEXT_TOKENS) -> dict:
    """What a cell's numbers depend on besides the model and the probe."""
    protocol = {
        "split": "dev",
        "windows": request.windows,
        "context_tokens": context_tokens,
        "top_k": request.top_k,
        "scoring": SCORING,
    }
    if (text := scored_text(request)) != NEWS:  # the news key as before: its stored cells stay
        protocol["text"] = text
    if request.probe.needs_calibration:
        from core.jobs.experiment import ExperimentSettings

        s = request.settings or ExperimentSettings()
        protocol["calibration"] = [
            s.calibration_source,
            s.calibration_windows,
            s.calibration_length,
        ]
    return protocol


def scored_text(request: SensitivityRequest) -> str:
    """The bundled text whose dev split scores the cells: the settings'
    evaluation text (a user's file has no dev split: news then)."""
    from core.jobs.experiment import ExperimentSettings

    return (request.settings or ExperimentSettings()).calibration_source


def model_identity(original) -> dict:
    """What a stored map's cells were measured on: a folder changed since, or
    the model loaded in another dtype, measures its map anew. The files by
    their stamp, not their digest: the window reads stored maps on its own
    thread, where hashing a large model would freeze it."""
    from core.models.source_identity import folder_stamp, loaded_dtype

    d = original.description
    return {
        "source": original.source,
        "architecture": d.architecture,
        "parameters": d.parameters,
        "layers": d.layers,
        "device": d.device,
        "dtype": loaded_dtype(original),
        "files": folder_stamp(original.folder),
    }


def store_key(request: SensitivityRequest, context_tokens: int | None = None) -> str:
    """The store key of this request's cells (the window reads stored maps by it)."""
    from core.results.sensitivity_store import cell_key

    context = context_tokens or _context_tokens(request.original)
    return cell_key(
        model_identity(request.original),
        request.probe.to_dict(),
        protocol_of(request, context),
    )


def _context_tokens(original) -> int:
    from core.runtime.generation import context_length

    return min(CONTEXT_TOKENS, context_length(original.model.config))


def stored_cells(request: SensitivityRequest) -> list[SensitivityCell]:
    """The cells of this request's grid already in its store, in grid order."""
    from core.jobs.sensitivity_probes import columns_of

    if request.store is None:
        return []
    found = request.store.cells(store_key(request))
    layers = request.original.model.config.num_hidden_layers
    grid = [
        (layer, part)
        for layer in range(layers)
        for part in columns_of(request.probe, request.parts)
    ]
    cells = []
    for layer, part in grid:
        line = found.get((layer, part))
        if line is not None:
            cells.append(SensitivityCell(layer, part, line["mean_kl"], line["ppl_ratio"], 0, 0))
    total = len(grid)
    return [dataclasses.replace(c, done=i + 1, total=total) for i, c in enumerate(cells)]


def sensitivity(
    request: SensitivityRequest,
    progress: ProgressSink = ignore_progress,
    cancel: CancelToken | None = None,
) -> Iterator[object]:
    """Yield SensitivityResumed (cells from the store, if any), a
    SensitivityCell per newly measured layer (and part), then the map."""
    from core.data.texts import SOURCES
    from core.evaluate.perplexity import PerplexityProtocol, perplexity_windows
    from core.jobs.experiment import ExperimentSettings, read_calibration
    from core.jobs.layer_probe import probed_copy, record_original, scored
    from core.jobs.loaded_graph import SENSITIVITY, require_pytorch
    from core.jobs.sensitivity_probes import LayerProbe, columns_of
    from core.jobs.tasks import task_for
    from core.passes.base import PassContext
    from core.passes.recipe import Recipe, validate

    start = time.perf_counter()
    cancel = cancel or CancelToken()
    original, probe = request.original, request.probe
    if task_for(original).name != "causal-lm":
        raise ValueError("the sensitivity map scores next-token predictions: a causal LM only")
    check_probe(probe)
    require_pytorch(original, SENSITIVITY)
    for name in request.parts:
        parse_cells(name)  # refuses an unknown part before any work
    parts = columns_of(probe, request.parts)
    layer_probe = isinstance(probe, LayerProbe)
    if layer_probe:
        probe.check(original.model)  # a family it cannot change: one line, no work
    layers = original.model.config.num_hidden_layers
    total = layers * len(parts)
    context = _context_tokens(original)
    key = store_key(request, context)
    resumed = stored_cells(request)
    if resumed:
        yield SensitivityResumed(tuple(resumed), total)
    measured = {(c.layer, c.part): c for c in resumed}
    todo = [(layer, part) for layer in range(layers) for part in parts]
    todo = [cell for cell in todo if cell not in measured]
    protocol = PerplexityProtocol(
        context_tokens=context,
        stride=context // 2,
        split="dev",
        quick_windows=request.windows,
        source=scored_text(request),
    )
    windows = perplexity_windows(original.tokenizer, protocol)[: request.windows]
    probes = {}
    for layer, part in [] if layer_probe else todo:  # a refused scope: before any work
        cell_probe = dataclasses.replace(probe, layers=str(layer), parts=COMPONENTS.get(part, part))
        validate(Recipe((cell_probe,)))
        probes[(layer, part)] = cell_probe
    if todo:
        calibration = None
        if probe.needs_calibration:
            settings = request.settings or ExperimentSettings()
            calibration = read_calibration(original, settings, progress)
        progress(Progress("Sensitivity: the original on the dev windows", None))
        record = record_original(original.model, windows, request.top_k, cancel)
        measured_once = None
        if layer_probe:  # e.g. prune_mlp's neuron importance, once for every cell
            progress(Progress(f"Sensitivity: measuring for {probe.summary()}", None))
            once_context = PassContext(calibration, ignore_progress, cancel)
            measured_once = probe.measure(original.model, calibration, once_context)
    for layer, part in todo:
        cancel.raise_if_cancelled()
        where = f"layer {layer} {part}".strip()
        progress(Progress(f"Sensitivity: {where}", len(measured) / total))
        model = probed_copy(original.model, layer)
        pass_context = PassContext(calibration, ignore_progress, cancel)
        if layer_probe:
            model = probe.apply(model, layer, measured_once, pass_context)
        else:
            model = probes[(layer, part)].apply(model, pass_context)
        model.eval()
        scores = scored(model, layer, record, cancel)
        del model  # one probed layer at a time
        kl = sum(s.kl for s in scores) / len(scores)
        ratio = math.exp(sum(s.nll_delta for s in scores) / len(scores))
        cell = SensitivityCell(layer, part, kl, ratio, len(measured) + 1, total)
        measured[(layer, part)] = cell
        if request.store is not None:  # kept at once: a cancel or a crash loses no cell
            request.store.append(
                key,
                model_identity(original),
                probe.to_dict(),
                protocol_of(request, context),
                dataclasses.asdict(cell),
            )
        yield cell
    grid = [measured[(layer, part)] for layer in range(layers) for part in parts]
    kind = {"": "layer", **dict.fromkeys(COMPONENTS, "component")}
    what = "one " + kind.get(parts[0], "layer part") + " compressed at a time"
    if layer_probe:
        what = f"{probe.summary()}, one layer at a time"
    yield SensitivityMap(
        probe.to_dict(),
        f"KL over the original's top {request.top_k} next tokens (+ one bucket for the rest) "
        f"and paired perplexity ratio over {len(windows)} dev-split windows of "
        f"{context} tokens of {SOURCES[protocol.source]}, {what}",
        tuple(grid),
        time.perf_counter() - start,
        len(resumed),
    )
