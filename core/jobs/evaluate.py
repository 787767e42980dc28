"""The Evaluate job: perplexity on a protocol (a bundled text's split or the
user's own file), and when a reference is named, fidelity to it (KL, top-1
agreement, paired perplexity ratio) and greedy generations side by side;
zero-shot sentiment on request. A classifier gets accuracy (and agreement
with a reference classifier). The report is one JSON-ready dict."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass

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


@dataclass(frozen=True)
class EvaluationReport:
    data: dict  # what the CLI prints, or dumps as JSON


def _same_tokenizer(a, b) -> bool:
    return a.get_vocab() == b.get_vocab()


def _reference(request: EvaluateRequest, progress, cancel):
    from core.models.loading import load_model

    if request.reference_is_loaded:
        return request.loaded
    # the reference in the device's default dtype: the dtype asked is the candidate's
    return load_model(request.reference, request.device, progress=progress, cancel=cancel)


def evaluate(
    request: EvaluateRequest,
    progress: ProgressSink = ignore_progress,
    cancel: CancelToken | None = None,
) -> Iterator[object]:
    """Yield partial results as they come, then the EvaluationReport."""
    if request.loaded.is_classifier:
        yield from _evaluate_classifier(request, progress, cancel)
        return
    from core.evaluate.fidelity import FidelityResult, evaluate_fidelity
    from core.evaluate.perplexity import PerplexityResult, evaluate_perplexity, perplexity_windows
    from core.evaluate.side_by_side import side_by_side_generations

    loaded = request.loaded
    model, tokenizer = loaded.model, loaded.tokenizer
    windows = perplexity_windows(tokenizer, request.protocol)
    ppl = None
    for event in evaluate_perplexity(model, tokenizer, request.protocol, cancel, windows):
        ppl = event if isinstance(event, PerplexityResult) else ppl
        yield event
    report = {"model": request.name, "perplexity": asdict(ppl)}

    if request.reference is not None:
        reference = _reference(request, progress, cancel)
        if not _same_tokenizer(reference.tokenizer, tokenizer):
            raise ValueError(f"{request.reference} uses a different tokenizer; fidelity needs one")
        fidelity = None
        for event in evaluate_fidelity(reference.model, model, tokenizer, windows, cancel):
            fidelity = event if isinstance(event, FidelityResult) else fidelity
            yield event
        pairs = list(side_by_side_generations(reference.model, model, tokenizer))
        report |= {
            "reference": request.reference,
            "fidelity": asdict(fidelity),
            "generations": [asdict(p) for p in pairs],
        }

    if request.sentiment:
        from core.evaluate.zero_shot import AccuracyResult, ZeroShotProtocol, evaluate_zero_shot

        accuracy = None
        task = ZeroShotProtocol(mode=request.protocol.mode)
        for event in evaluate_zero_shot(model, tokenizer, task, cancel):
            accuracy = event if isinstance(event, AccuracyResult) else accuracy
            yield event
        report["sentiment"] = asdict(accuracy)
    yield EvaluationReport(report)


def _evaluate_classifier(request: EvaluateRequest, progress, cancel) -> Iterator[object]:
    """Sentiment accuracy (and agreement with the reference) of a classifier."""
    from core.evaluate.classifier_accuracy import ClassifierProtocol, evaluate_classifier
    from core.evaluate.zero_shot import AccuracyPartial

    loaded, reference = request.loaded, None
    if request.reference is not None:
        reference = _reference(request, progress, cancel)
        if not reference.is_classifier:
            raise ValueError(f"{request.reference} is not a classifier; agreement needs one")
        if not _same_tokenizer(reference.tokenizer, loaded.tokenizer):
            raise ValueError(f"{request.reference} uses a different tokenizer; agreement needs one")
    result = None
    protocol = ClassifierProtocol(mode=request.protocol.mode)
    for event in evaluate_classifier(
        loaded.model, loaded.tokenizer, protocol, cancel, reference and reference.model
    ):
        result = event if not isinstance(event, AccuracyPartial) else result
        yield event
    report = {"model": request.name, "task": loaded.task, "accuracy": asdict(result)}
    if reference is not None:
        report["reference"] = request.reference
    yield EvaluationReport(report)
