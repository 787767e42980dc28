"""The cheap quality proxy: a recipe built fast and scored by KL divergence
to the original on a few windows of the dev split (choosing is never done
on the report split), with the paired perplexity ratio and top-1 agreement
beside it. The original's logits are computed once per scorer.

The same ``ProxyScorer`` runs in this process (on the model already
loaded) or in a worker (a process of the local pool or a Ray task), which
loads the model itself from ``ProxySpec.source`` on the CPU and keeps it
for the next recipe it is sent. Speed is never measured here.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass

PROXY_VERSION = 1  # bump when what a proxy score means changes (the cache keys on it)


@dataclass(frozen=True)
class ProxySpec:
    """Everything a worker needs to score a recipe like this process would."""

    source: str  # what load_model reads (a folder, a hub id, "default")
    dtype: str  # the loaded model's float type, e.g. "float32"
    protocol: object  # core.evaluate.perplexity.PerplexityProtocol on the dev split
    calibration_windows: int = 4  # for passes that still calibrate (pruning)
    calibration_length: int = 256
    calibration_source: str = "news"
    threads: int | None = None  # a worker's torch threads (None: leave as is)

    def describe(self) -> str:
        from core.data.texts import SOURCES

        p = self.protocol
        return (
            f"KL to the original over {p.quick_windows} dev-split windows of "
            f"{p.context_tokens} tokens of {SOURCES[p.source]}; "
            "calibrated int4 scored by its RTN twin; "
            f"pruning calibrated on {self.calibration_windows} windows of "
            f"{self.calibration_length} tokens"
        )

    def cache_part(self) -> dict:
        """What a cached score depends on (threads do not change the numbers)."""
        data = asdict(self)
        data.pop("threads")
        data["protocol"] = asdict(self.protocol)
        return data


@dataclass(frozen=True)
class ProxyScore:
    kl: float  # nats per token, KL(original || candidate), mean over windows
    ppl_ratio: float  # candidate / original perplexity on the same dev tokens
    top1: float  # fraction of positions whose most likely token agrees
    windows: int
    seconds: float


@dataclass(frozen=True)
class ProxyFailure:
    message: str  # why the recipe could not be built or scored (one line)


def dev_protocol(settings, windows: int):
    """The dev split of the evaluation text (of the calibration source when
    the user scores a file of their own: a file has no dev split)."""
    from dataclasses import replace

    from core.evaluate.perplexity import QUICK, PerplexityProtocol

    base = settings.perplexity_protocol()
    if base.text_file:
        base = replace(base, text_file="", source=settings.calibration_source)
    assert isinstance(base, PerplexityProtocol)
    return replace(
        base,
        split="dev",
        mode=QUICK,
        quick_windows=windows,
        full_windows=max(windows, base.full_windows),
    )


class ProxyScorer:
    """Scores recipes against one original, whose dev logits it computes once."""

    def __init__(self, loaded, spec: ProxySpec) -> None:
        from core.evaluate.fidelity import reference_logits
        from core.evaluate.perplexity import perplexity_windows

        self.loaded, self.spec = loaded, spec
        protocol = spec.protocol
        self.windows = perplexity_windows(loaded.tokenizer, protocol)[: protocol.quick_windows]
        self.reference = reference_logits(loaded.model, self.windows)
        self._calibration = None

    def calibration(self):
        if self._calibration is None:
            from core.passes.calibration import calibration_windows

            spec = self.spec
            self._calibration = calibration_windows(
                self.loaded.tokenizer,
                spec.calibration_windows,
                spec.calibration_length,
                spec.calibration_source,
            )
        return self._calibration

    def score(self, recipe_dict: dict, cancel=None) -> ProxyScore | ProxyFailure:
        """Build ``recipe_dict`` on a copy of the original and score it; a
        recipe that cannot be built is a ProxyFailure saying why (a cancel
        is raised, not returned)."""
        from core.errors import Cancelled, WorkbenchError
        from core.evaluate.fidelity import fidelity_to_logits
        from core.passes.recipe import Recipe, apply_recipe

        start = time.perf_counter()
        try:
            recipe = Recipe.from_dict(recipe_dict)
            calibration = self.calibration() if recipe.needs_calibration() else None
            built = apply_recipe(self.loaded, recipe, calibration, cancel=cancel)
            scores = [
                fidelity_to_logits(logits, built.loaded.model, window)
                for logits, window in zip(self.reference, self.windows, strict=True)
            ]
        except Cancelled:
            raise
        except (WorkbenchError, ValueError, RuntimeError, NotImplementedError) as err:
            return ProxyFailure(f"{type(err).__name__}: {err}".splitlines()[0][:300])
        del built  # one candidate copy at a time
        count = len(scores)
        return ProxyScore(
            kl=sum(s.kl for s in scores) / count,
            ppl_ratio=math.exp(sum(s.nll_delta for s in scores) / count),
            top1=sum(s.top1_agreement for s in scores) / count,
            windows=count,
            seconds=time.perf_counter() - start,
        )


# A worker's scorers, one per spec: the model loads once per worker process.
_WORKER_SCORERS: dict = {}


def score_in_worker(spec: ProxySpec, index: int, recipe_dict: dict):
    """A pool process's or Ray task's entry: ``(index, score or failure)``.
    Loads the model (CPU) the first time this process sees ``spec``."""
    key = repr(spec)
    scorer = _WORKER_SCORERS.get(key)
    if scorer is None:
        from core.models.loading import load_model
        from core.runtime.device import set_threads

        if spec.threads:
            set_threads(spec.threads)
        try:
            loaded = load_model(spec.source, device="cpu", dtype=spec.dtype)
        except Exception as err:  # a worker that cannot load says why, per recipe
            return index, ProxyFailure(f"the worker could not load {spec.source}: {err}"[:300])
        _WORKER_SCORERS.clear()  # one model per worker at a time
        scorer = _WORKER_SCORERS[key] = ProxyScorer(loaded, spec)
    return index, scorer.score(recipe_dict)
