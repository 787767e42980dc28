"""A model loaded from an exported ONNX folder runs in ONNX Runtime as it
was built: it is generated from, timed, scored, served and measured as a
run (its records name the runtime that built it), but never rebuilt.
Passes, distillation, sensitivity probes, search and export rewrite or trace
PyTorch modules, so each refuses such a model in one line before any work
(they used to fail deep inside, on an AttributeError or on pickling the
InferenceSession)."""

from __future__ import annotations

import json
from pathlib import Path

from core.errors import UnsupportedModelError
from core.runtime.registry import DEFAULT_RUNTIME, RUNTIMES, label
from core.runtime.runners import is_onnx_runtime

MAX_RECORD_BYTES = 1_000_000  # an onnx_export.json larger than this is not read

# What each refusing operation is called in its line (the window greys its
# button with the same line).
EXPORT = "export (which rebuilds the configuration)"
DISTILLATION = "distillation"
SENSITIVITY = "a sensitivity probe"
SEARCH = "the search (over compression passes)"
DEMO = "the side-by-side demo (of a compressed copy)"


def require_pytorch(loaded, what: str) -> None:
    """Refuse ``what`` (e.g. "distillation") on a loaded ONNX graph."""
    if is_onnx_runtime(loaded.model):
        raise UnsupportedModelError(pytorch_refusal(loaded.source, what))


def pytorch_refusal(source: str, what: str) -> str:
    return (
        f"{source} is an ONNX graph, and {what} works on PyTorch modules: load the "
        "Hugging Face folder it was exported from"
    )


def graph_runtime(model) -> str | None:
    """The registry key of the runtime that built this graph (what its runs
    record), or None when it cannot be told. The kind of graph is read from
    its operators and MatMulNBits' bits (read when it was opened); a static int8 calibration method,
    which leaves no trace in the graph, from the export's record beside it."""
    bits = model.weight_bits if model.weight_only else 0
    calibration = _recorded(model.path.parent).get("calibration") if model.static_int8 else ""
    for key, runtime in RUNTIMES.items():
        if (
            runtime.onnx
            and runtime.fused == model.fused
            and runtime.int8 == (model.int8 and not model.static_int8)
            and runtime.calibration == calibration  # None (not recorded) matches none
            and runtime.weight_bits == bits
        ):
            return key
    return None


def graph_run_refusal(model, source: str, recipe, key: str, explicit: bool = False) -> str | None:
    """Why a loaded graph cannot be measured with ``recipe`` on runtime
    ``key``, or None. It runs only as it was built: ``key`` is its own
    runtime, or the default (which, for a graph, means "as loaded") unless
    the user named it (``explicit``: ``--backend torch`` was ignored)."""
    passes = getattr(recipe, "passes", ())
    if passes:
        return pytorch_refusal(source, f"{passes[0].name} (a compression pass)")
    own = graph_runtime(model)
    if own is None:
        return (
            f"{source}: the workbench cannot tell which of its runtimes built this graph "
            "(a static int8 graph's calibration is read from the onnx_export.json beside it)"
        )
    if key not in ((own,) if explicit else (DEFAULT_RUNTIME, own)):
        return (
            f"{source} is an ONNX graph built for {label(own)}; it runs only as it was "
            f"exported, not on {label(key)}: load the folder it was exported from for that"
        )
    return None


def graph_run_runtime(loaded, recipe, key: str) -> str:
    """The runtime a run of ``loaded`` is measured and recorded on: ``key``
    for a PyTorch model; a graph's own runtime (refused in one line when
    ``recipe`` or ``key`` asks for something else)."""
    if not is_onnx_runtime(loaded.model):
        return key
    if refusal := graph_run_refusal(loaded.model, loaded.source, recipe, key):
        raise UnsupportedModelError(refusal)
    return graph_runtime(loaded.model)


def _recorded(folder: Path) -> dict:
    """The export's own record of how it was built (onnx_export.json), or {}."""
    from core.onnx.export import REPORT_FILE

    path = folder / REPORT_FILE
    try:
        if path.stat().st_size > MAX_RECORD_BYTES:  # not ours: ours is a few kB
            return {}
        recorded = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return recorded if isinstance(recorded, dict) else {}
