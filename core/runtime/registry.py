"""Every runtime a configuration can be measured on, in one place, with one
vocabulary: the key is what the CLI's ``--backend`` takes, what the window's
Run on combo stores, and what a RunRecord's ``backend`` field holds.

``prepare`` turns a built model into one ready to run on a runtime (compiled
now, or exported to ONNX and opened in ONNX Runtime) and says what rebuilds
it: the provenance a run keeps so its export is what was measured.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from core.jobs import CancelToken, Progress, ProgressSink, ignore_progress


@dataclass(frozen=True)
class Runtime:
    key: str  # the one vocabulary: CLI flag value, combo data, RunRecord.backend
    label: str  # what a person reads
    onnx: bool = False  # measured on an ONNX graph exported from the built model
    int8: bool = False  # the graph quantised by ONNX Runtime's quantize_dynamic
    compiled: bool = False  # decode step compiled by torch.compile
    classifier: bool = False  # runs sequence classifiers too


RUNTIMES: dict[str, Runtime] = {
    r.key: r
    for r in (
        Runtime("torch", "PyTorch eager", classifier=True),
        Runtime("torch-compile", "PyTorch compiled", compiled=True),
        Runtime("ort", "ONNX Runtime", onnx=True),
        Runtime("ort-int8", "ONNX Runtime int8", onnx=True, int8=True),
    )
}
DEFAULT_RUNTIME = "torch"


class UnknownRuntimeError(ValueError):
    """A runtime key that is not registered."""


def runtime(key: str) -> Runtime:
    try:
        return RUNTIMES[key]
    except (KeyError, TypeError):
        raise UnknownRuntimeError(
            f"unknown runtime {key!r}; choose one of {', '.join(RUNTIMES)}"
        ) from None


def label(key: str) -> str:
    """The runtime's name for people; an unknown key (an old record) as it is."""
    return RUNTIMES[key].label if key in RUNTIMES else key


def run_title(name: str, key: str) -> str:
    """A configuration's name with its runtime, unless it is PyTorch eager."""
    return name if key == DEFAULT_RUNTIME else f"{name} [{label(key)}]"


def check_supports(key: str, is_classifier: bool) -> Runtime:
    """The runtime, or a one-line refusal when it cannot run this model kind."""
    chosen = runtime(key)
    if is_classifier and not chosen.classifier:
        raise UnknownRuntimeError(
            f"{chosen.label} runs causal language models here; a classifier runs on PyTorch eager"
        )
    return chosen


@dataclass(frozen=True)
class Prepared:
    """A model ready on a runtime, the notes a result on it carries, and the
    provenance fields that identify exactly what ran (RunRecord.artifact)."""

    loaded: object  # core.loading.LoadedModel
    notes: tuple[str, ...]
    artifact: dict


def prepare(
    candidate,
    key: str,
    tokens: int,
    progress: ProgressSink = ignore_progress,
    cancel: CancelToken | None = None,
) -> Prepared:
    """``candidate`` ready to run on runtime ``key`` for runs of up to
    ``tokens`` tokens: as it is, compiled now (never timed), or exported to
    ONNX (or found in the export cache) and opened in ONNX Runtime."""
    chosen = check_supports(key, candidate.is_classifier)
    artifact = {"runtime": chosen.key, "runtime_label": chosen.label}
    if chosen.compiled:
        from core.runtime.compiled_runner import compile_decode
        from core.runtime.runners import COMPILED_RUNNER

        progress(Progress("Compiling the decode step (torch.compile; takes a while)", None))
        seconds = compile_decode(candidate.model, tokens)
        note = (
            f"decode compiled by torch.compile (inductor, frozen weights) in {seconds:.0f} s "
            "before timing; quality is measured on the same weights in eager PyTorch; "
            "an export holds those eager weights"
        )
        artifact |= {"compile_s": round(seconds, 1), "weights": "eager (same as measured)"}
        return Prepared(dataclasses.replace(candidate, runner=COMPILED_RUNNER), (note,), artifact)
    if chosen.onnx:
        from core.export.onnx_cache import cached_onnx_export, graph_digest
        from core.loading_onnx import load_onnx_folder

        progress(Progress("Exporting to ONNX (or reading the export cache)", None))
        folder = cached_onnx_export(candidate, chosen.int8, progress, cancel)
        source = f"{candidate.source} (ONNX{' int8' if chosen.int8 else ''})"
        loaded = load_onnx_folder(folder, source, "auto")
        artifact |= {"onnx_cache_entry": folder.name, "onnx_sha256": graph_digest(folder)}
        note = (
            f"measured on the ONNX graph ({'int8, quantize_dynamic' if chosen.int8 else 'fp32'}) "
            f"sha256 {artifact['onnx_sha256'][:12]}; an export holds this graph beside the "
            "PyTorch folder it was made from"
        )
        return Prepared(loaded, (note,), artifact)
    return Prepared(candidate, (), artifact)
