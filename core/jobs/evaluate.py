"""The Evaluate job: perplexity on a protocol (a bundled text's split or the
user's own file), and when a reference is named, fidelity to it (KL, top-1
agreement, paired perplexity ratio) and greedy generations side by side;
zero-shot sentiment on request. A classifier gets accuracy (and agreement
with a reference classifier). The report is one JSON-ready dict."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from core.progress import CancelToken, ProgressSink, ignore_progress


@dataclass(frozen=True)
class EvaluateRequest:
    loaded: object  # core.models.loading.LoadedModel, the model evaluated
    name: str  # how the report names it (the source the user gave)
    protocol: object  # core.evaluate.perplexity.PerplexityProtocol
    reference: str | None = None  # a model source to compare with
    reference_is_loaded: bool = False  # the reference is the loaded model as it is
    device: str = "auto"  # where the reference loads
    sentiment: bool = False  # zero-shot film-review sentiment too (causal LM)
    # The window length is the default, not the user's: shorten it to a
    # model whose context is shorter (and say so) instead of refusing.
    fit_context: bool = False


@dataclass(frozen=True)
class EvaluationReport:
    data: dict  # what the CLI prints, or dumps as JSON


def measured_on(loaded) -> dict:
    """Where an evaluation ran: its runtime, device, weights' dtypes and
    threads, so that a stored or printed score says how it was measured."""
    import torch

    from core.runtime.runners import is_onnx_runtime

    model = loaded.model
    by_dtype = loaded.description.bytes_by_dtype
    # a graph's shape constants (int64, bool) are not what its weights are stored as
    weights = [d for d, n in by_dtype.items() if n >= 0.01 * sum(by_dtype.values())]
    return {
        "runtime": model.runner_name if is_onnx_runtime(model) else "torch",
        "device": str(loaded.device),
        "weights": sorted(weights),
        "threads": torch.get_num_threads(),
    }


def reference_for(request: EvaluateRequest, task, progress, cancel):
    """The reference model, refused unless it is of the same kind as the
    model evaluated and reads the same tokens."""
    from core.jobs.tasks import task_for
    from core.models.loading import load_model

    if request.reference_is_loaded:
        return request.loaded
    # the reference in the device's default dtype: the dtype asked is the candidate's
    reference = load_model(request.reference, request.device, progress=progress, cancel=cancel)
    if task_for(reference).name != task.name:
        raise ValueError(f"{request.reference} is not a {task.kind}; {task.compared_by} needs one")
    if reference.tokenizer.get_vocab() != request.loaded.tokenizer.get_vocab():
        raise ValueError(
            f"{request.reference} uses a different tokenizer; {task.compared_by} needs one"
        )
    return reference


def evaluate(
    request: EvaluateRequest,
    progress: ProgressSink = ignore_progress,
    cancel: CancelToken | None = None,
) -> Iterator[object]:
    """Yield partial results as they come, then the EvaluationReport."""
    from core.jobs.tasks import task_for

    yield from task_for(request.loaded).evaluate(request, progress, cancel)
