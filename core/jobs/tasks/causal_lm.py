"""The causal language model: built with calibration windows of the
evaluation text's calibration split, timed by the decode protocol
(``core.measure.speed``: prefill, ms per generated token), scored by
perplexity on the report split and by fidelity to the original (top-1
agreement, KL, paired perplexity ratio)."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import asdict

from core.models.source_identity import identity
from core.progress import Progress
from core.results.metrics import CAUSAL_LM, LMMetrics


class CausalLMTask:
    name = CAUSAL_LM
    metrics = LMMetrics
    kind = "causal language model"  # how messages name it
    compared_by = "fidelity"  # what comparing it with a reference measures

    def check(self, original, settings) -> None:
        """The decode protocol's prompt and answer fit the model's context
        (compress timed positions past it: a sweep's 4-token model)."""
        from core.runtime.generation import context_length

        needed = settings.bench.prompt_tokens + settings.bench.new_tokens
        limit = context_length(original.model.config)
        if needed > limit:
            raise ValueError(
                f"the decode benchmark times {settings.bench.prompt_tokens} prompt + "
                f"{settings.bench.new_tokens} new tokens = {needed}, over the model's "
                f"{limit}-token context"
            )

    def build(self, original, recipe, settings, progress, cancel):
        from core.jobs.experiment import read_calibration
        from core.passes.recipe import apply_recipe

        calibration = heal = None
        if recipe.needs_calibration():
            calibration = read_calibration(original, settings, progress)
        if any(p.name == "heal" for p in recipe.passes):
            from core.jobs.heal import healer_for, record_weights

            heal = healer_for(original, settings.calibration_source)
        compressed = apply_recipe(original, recipe, calibration, progress, cancel, heal)
        if heal is not None:
            record_weights(compressed)  # Export checks its rebuild against it
        return compressed

    def measure(
        self,
        original,
        candidate,
        recipe,
        notes,
        settings,
        progress,
        cancel,
        runtime,
        label,
        artifact,
    ) -> Iterator[object]:
        from core.evaluate.fidelity import FidelityResult, evaluate_fidelity
        from core.evaluate.health import broken_cause
        from core.evaluate.perplexity import (
            PerplexityResult,
            evaluate_perplexity,
            fitted_to_context,
            perplexity_windows,
        )
        from core.jobs.on_runtime import prepare
        from core.measure.speed import BenchResult, benchmark
        from core.models.finite_weights import ORIGINAL_NOT_NUMBERS
        from core.results.store import RunRecord
        from core.runtime.registry import run_title

        needed = settings.bench.prompt_tokens + settings.bench.new_tokens
        prepared = prepare(candidate, runtime, needed, progress, cancel)
        candidate, notes = prepared.loaded, [*notes, *prepared.notes]

        progress(Progress("Benchmarking", None))
        bench = None
        for event in benchmark(candidate, settings.bench, cancel):
            if isinstance(event, BenchResult):
                bench = event
            yield event

        ppl = fidelity = None
        if settings.evaluate:
            protocol, fitted = fitted_to_context(
                settings.perplexity_protocol(), original.model.config
            )
            notes = [*notes, fitted] if fitted else notes
            progress(Progress("Perplexity", None))
            windows = perplexity_windows(original.tokenizer, protocol)
            for event in evaluate_perplexity(
                candidate.model, original.tokenizer, protocol, cancel, windows
            ):
                if isinstance(event, PerplexityResult):
                    ppl = event
                yield event
            if candidate.model is not original.model:  # else agreement is 1 by definition
                progress(Progress("Fidelity to the original", None))
                for event in evaluate_fidelity(
                    original.model, candidate.model, original.tokenizer, windows, cancel
                ):
                    if isinstance(event, FidelityResult):
                        fidelity = event
                    yield event

        total, by_component = _stored_bytes(candidate, runtime)
        # The original agrees with itself by definition (not measured again),
        # unless its own perplexity is not a number.
        top1 = fidelity.top1_agreement if fidelity else (1.0 if ppl else None)
        ppl_ratio = fidelity.ppl_ratio if fidelity else (1.0 if ppl else None)
        if ppl and not math.isfinite(ppl.ppl) and fidelity is None:
            ppl_ratio = math.nan
        metrics = LMMetrics(
            prefill_ms=bench.prefill_ms.median,
            decode_ms_per_token=bench.decode_ms_per_token.median,
            decode_ms_p10=bench.decode_ms_per_token.p10,
            decode_ms_p90=bench.decode_ms_per_token.p90,
            tokens_per_s=bench.tokens_per_s,
            ppl=ppl.ppl if ppl else None,
            ppl_ci95=ppl.ci95_halfwidth if ppl else None,
            ppl_ci95_low=ppl.ci95_low if ppl else None,
            ppl_ci95_high=ppl.ci95_high if ppl else None,
            top1_agreement=top1,
            mean_kl=fidelity.mean_kl if fidelity else (0.0 if ppl else None),
            ppl_ratio=ppl_ratio,
        )
        yield RunRecord(
            model=original.source,
            recipe=recipe.to_dict(),
            recipe_name=run_title(label, runtime),
            backend=runtime,
            bytes=total,
            bytes_by_component=by_component,
            metrics=metrics,
            broken=broken_cause(
                top1,
                ppl_ratio,
                recipe.to_dict(),
                runtime,
                original.description.model_type,
                cause=ORIGINAL_NOT_NUMBERS if original.description.non_finite_weights else "",
                layers=original.description.layers,
            ),  # fmt: skip
            device=bench.environment.device,
            threads=bench.environment.threads,
            bench_protocol=bench.protocol,
            eval_protocol=ppl.protocol if ppl else "",
            machine_load=bench.machine_load.to_dict() if bench.machine_load else {},
            machine_busy=bench.machine_busy,
            notes=notes,
            artifact={**prepared.artifact, **(artifact or {}), **identity(original)},
        )

    def bench(self, request, cancel) -> Iterator[object]:
        from core.jobs.bench import check_context
        from core.measure.speed import benchmark

        settings = request.lm_settings()
        check_context(request.loaded, settings.prompt_tokens + settings.new_tokens)
        yield from benchmark(request.loaded, settings, cancel)

    def evaluate(self, request, progress, cancel) -> Iterator[object]:
        """Perplexity; with a reference, fidelity and greedy generations side
        by side; zero-shot sentiment on request."""
        from core.evaluate.fidelity import FidelityResult, evaluate_fidelity
        from core.evaluate.perplexity import (
            PerplexityResult,
            evaluate_perplexity,
            fitted_to_context,
            perplexity_windows,
        )
        from core.evaluate.side_by_side import side_by_side_generations
        from core.jobs.evaluate import EvaluationReport, measured_on, reference_for

        loaded = request.loaded
        model, tokenizer = loaded.model, loaded.tokenizer
        protocol = request.protocol
        reference = None  # loaded and checked first: a bad one wasted the whole perplexity pass
        if request.reference is not None:
            reference = reference_for(request, self, progress, cancel)
        if request.fit_context:
            protocol, fitted = fitted_to_context(protocol, model.config)
            if fitted:
                progress(Progress(fitted, None))
        windows = perplexity_windows(tokenizer, protocol)
        ppl = None
        for event in evaluate_perplexity(model, tokenizer, protocol, cancel, windows):
            ppl = event if isinstance(event, PerplexityResult) else ppl
            yield event
        report = {
            "model": request.name,
            "task": self.name,
            "perplexity": asdict(ppl),
            "measured_on": measured_on(loaded),
        }
        if not math.isfinite(ppl.ppl):  # NaN compares false with everything: say it in words
            from core.evaluate.health import NOT_A_NUMBER

            report["problem"] = NOT_A_NUMBER

        if reference is not None:
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
            from core.evaluate.health import broken_cause

            collapsed = broken_cause(
                fidelity.top1_agreement,
                fidelity.ppl_ratio,
                cause=f"its predictions depart that far from {request.reference}'s",
                compared_with="the reference's",
            )
            if collapsed:  # flagged as a run of the same numbers would be
                report.setdefault("problem", collapsed)

        if request.sentiment:
            from core.evaluate.zero_shot import AccuracyResult, ZeroShotProtocol, evaluate_zero_shot

            accuracy = None
            protocol = ZeroShotProtocol(mode=request.protocol.mode)
            for event in evaluate_zero_shot(model, tokenizer, protocol, cancel):
                accuracy = event if isinstance(event, AccuracyResult) else accuracy
                yield event
            report["sentiment"] = asdict(accuracy)
        yield EvaluationReport(report)


def _stored_bytes(candidate, runtime: str) -> tuple[int, dict[str, int]]:
    """What the configuration weighs as it ran: its modules' storage on
    PyTorch; on ONNX Runtime, the graph's stored weights (an untied head
    counts twice: it is stored twice)."""
    from core.models.size import measure_size
    from core.runtime.registry import runtime as runtime_of

    if not runtime_of(runtime).onnx:
        size = measure_size(candidate.model)
        return size.total_bytes, size.by_component
    total = candidate.description.bytes_in_memory
    return total, {"onnx weights": total}


CAUSAL_LM_TASK = CausalLMTask()
