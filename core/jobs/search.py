"""The Search job: the best configuration under the user's limits, within a
time budget.

1. The original is measured (or found in the run store): every increase
   is against it, under the same protocol.
2. Candidates (core.search.candidates) are proposed; any whose size
   estimate breaks the size limit is dropped at once, saying so; any the
   store already holds, measured under the same settings, is reused.
3. Cheap proxies (core.search.proxy): each recipe built fast and scored by
   KL to the original on a few dev-split windows, in this process, in local
   worker processes or on Ray. Proxies far over a quality limit are dropped.
4. The most promising one is measured at once (the Run job: real bytes,
   speed on this machine, perplexity on the report split), so a best so
   far exists early; then the layers' sensitivity ranking (the Sensitivity
   job's int4 map, read back from its store where measured before, or a map
   given) makes the mixed-precision candidates, which are scored too. For a
   quality objective they are not tried where uniform int8 fits the size
   limit: int8 everywhere is at least as precise.
5. Candidates are promoted to measurement in proxy order, one at a time,
   while the budget lasts, skipping those that cannot beat the best.

Proxies never run while a configuration is timed: each batch of proxies
ends before the next measurement starts. A measurement under way when the
budget ends is finished (stopping it would waste it); no new one starts
when the longest similar one so far would not fit in what is left.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

from core.errors import Cancelled, WorkbenchError
from core.progress import CancelToken, Progress, ProgressSink, ignore_progress
from core.search.candidates import Candidate, SearchSpace
from core.search.events import (
    BestSoFar,
    CandidateMeasured,
    CandidateProposed,
    CandidateRejected,
    CandidateScored,
    LayersRanked,
    ReferenceMeasured,
    SearchFinished,
    SearchNote,
    SearchStarted,
)
from core.search.limits import Limits, objective, ppl_increase_pct, sizes_apart
from core.search.promotion import Scored, cannot_win, promotion_order, proxy_rejection


def _default_settings():
    from core.jobs.experiment import ExperimentSettings

    return ExperimentSettings()


@dataclass(frozen=True)
class SearchRequest:
    original: object  # core.models.loading.LoadedModel
    limits: Limits = field(default_factory=Limits)
    objective: str = "ppl"  # a key of core.search.limits.OBJECTIVES
    budget_s: float = 1800.0
    runtime: str = "torch"  # where measured candidates run (a key of RUNTIMES)
    settings: object = field(default_factory=_default_settings)  # ExperimentSettings
    threads: int | None = None
    ray_address: str | None = None  # "auto" or an address: proxies on Ray
    workers: int | None = None  # local proxy processes (None: by the CPU count)
    space: SearchSpace = field(default_factory=SearchSpace)
    proxy_windows: int = 2  # dev-split windows a proxy is scored on
    proxy_calibration_windows: int = 4  # for pruning passes built by a proxy
    store_path: Path | None = None  # the run store read for reuse (its folder: proxy cache)
    sensitivity: object = None  # a SensitivityMap ranking the layers (None: probed here)

    def __post_init__(self) -> None:
        check_inputs(self.limits, self.objective, self.budget_s, self.proxy_windows)


def check_inputs(limits: Limits, objective_key: str, budget_s: float, proxy_windows: int) -> None:
    """Refuse bad input before any model work, in one line."""
    objective(objective_key)
    if not isinstance(limits, Limits):
        raise ValueError("limits must be a core.search.limits.Limits")
    if not budget_s > 0:
        raise ValueError(f"the time budget must be above 0 s, got {budget_s}")
    if proxy_windows < 1:
        raise ValueError("a proxy needs at least one dev window")


def search(
    request: SearchRequest,
    progress: ProgressSink = ignore_progress,
    cancel: CancelToken | None = None,
) -> Iterator[object]:
    """Yield the search's events (core.search.events) and each newly measured
    RunRecord, ending with SearchFinished."""
    yield from _Search(request, progress, cancel or CancelToken()).run()


class _Search:
    def __init__(self, request: SearchRequest, progress: ProgressSink, cancel: CancelToken):
        self.request, self.progress, self.cancel = request, progress, cancel
        self.goal = objective(request.objective)
        self.items: dict[str, Scored] = {}  # every candidate that passed the size limit
        self.waiting: list[Scored] = []  # scored, not yet measured or dropped
        self.best: tuple[Scored | None, object, BestSoFar] | None = None
        self.durations: dict[bool, float] = {}  # calibrated? -> longest measurement, s
        self.counts = dict(proposed=0, scored=0, measured=0, reused=0, rejected=0)
        self.out_of_time = False

    # --- the plan ------------------------------------------------------------
    def run(self) -> Iterator[object]:
        from core.errors import UnsupportedModelError
        from core.jobs.loaded_graph import SEARCH, require_pytorch
        from core.jobs.on_runtime import runtime_refusal
        from core.jobs.tasks import task_for
        from core.model_kinds import CAUSAL_LM
        from core.models.source_identity import folder_digest
        from core.passes.recipe import Recipe
        from core.passes.size_estimate import estimate_size
        from core.results.store import ResultsStore
        from core.runtime.device import set_threads
        from core.runtime.registry import check_supports
        from core.search.reuse import MeasuredRuns, settings_key

        request, loaded = self.request, self.request.original
        require_pytorch(loaded, SEARCH)
        self.start = time.monotonic()
        self.deadline = self.start + request.budget_s
        task = task_for(loaded)
        names = {f.name for f in fields(task.metrics)}
        wanted = self.goal.metric_names()
        if wanted and not names & set(wanted):
            hint = "; a classifier is searched for accuracy" if loaded.is_classifier else ""
            raise ValueError(
                f"objective {self.goal.key}: this model kind does not measure it{hint}"
            )
        request.limits.check_metrics(task.metrics)
        check_supports(request.runtime, loaded.task)
        if refusal := runtime_refusal(request.runtime, loaded.model):  # the family, before work
            raise UnsupportedModelError(refusal)
        self.threads = set_threads(request.threads)
        self.key = settings_key(request.settings, self.threads)
        records = ResultsStore(request.store_path).load() if request.store_path else []
        self.files_digest = folder_digest(loaded.folder)
        self.runs = MeasuredRuns(records, loaded.source, self.key, self.files_digest)
        self.original_bytes = estimate_size(loaded.model, Recipe()).total_bytes
        self.byte_limit = request.limits.byte_limit(self.original_bytes)
        # The proxy scores next-token predictions: a classifier goes straight
        # from the size estimate to measurement.
        self.proxies = task.name == CAUSAL_LM
        self.executor = self._executor() if self.proxies else None
        try:
            yield SearchStarted(
                self.goal.title,
                request.limits.describe(),
                self.byte_limit,
                self.original_bytes,
                self.executor.description if self.executor else "no proxy for this model kind",
                self.spec.describe() if self.proxies else "",
                request.budget_s,
            )
            yield from self._reference()
            space, model = request.space, loaded.model
            first = []
            if "uniform" in space.families:
                from core.search.candidates import uniform_candidates

                first += uniform_candidates(model, space)
            if "pruning" in space.families:
                from core.search.candidates import pruning_candidates

                first += pruning_candidates(model, space)
            yield from self._stage(first)
            yield from self._promote(limit=1)  # a best so far, early
            if "mixed" in space.families and self.proxies and not self.out_of_time:
                yield from self._mixed()
            yield from self._promote()
        finally:
            if self.executor is not None:
                self.executor.close()
        best = self.best[2] if self.best else None
        yield SearchFinished(
            best,
            "time budget" if self.out_of_time else "every candidate considered",
            time.monotonic() - self.start,
            **self.counts,
        )

    def _executor(self):
        from dataclasses import replace as with_

        from core.evaluate.perplexity import fitted_to_context
        from core.runtime.device import cpu_count
        from core.runtime.generation import context_length
        from core.search.executors import default_workers, make_executor
        from core.search.proxy import ProxyScorer, ProxySpec, dev_protocol
        from core.search.proxy_cache import FILE_NAME, ProxyCache

        request, loaded = self.request, self.request.original
        settings = request.settings
        self.spec = ProxySpec(
            source=loaded.source,
            dtype=str(loaded.model.dtype).removeprefix("torch."),
            protocol=fitted_to_context(
                dev_protocol(settings, request.proxy_windows), loaded.model.config
            )[0],
            calibration_windows=min(
                request.proxy_calibration_windows, settings.calibration_windows
            ),
            calibration_length=min(
                settings.calibration_length, context_length(loaded.model.config)
            ),
            calibration_source=settings.calibration_source,
        )
        workers = request.workers or default_workers(cpu_count())
        worker_spec = with_(self.spec, threads=max(1, cpu_count() // max(workers, 1)))
        if request.ray_address:
            worker_spec = with_(self.spec, threads=1)  # one CPU a Ray task
        path = request.store_path.parent / FILE_NAME if request.store_path else None
        self.cache = ProxyCache(path)
        self.model_identity = {
            "source": loaded.source,
            "dtype": self.spec.dtype,
            "parameters": loaded.description.parameters,
            "files_sha256": self.files_digest,  # a folder changed since scores anew
        }
        return make_executor(
            request.ray_address, workers, worker_spec, lambda: ProxyScorer(loaded, self.spec)
        )

    # --- the original ----------------------------------------------------------
    def _reference(self) -> Iterator[object]:
        from core.passes.recipe import Recipe

        recipe = Recipe()
        self.reference = self.runs.find(recipe.to_dict(), "torch", None)
        reused = self.reference is not None
        if not reused:
            self.reference = yield from self._measure_recipe(recipe, "original", "torch")
            self.runs.learn(self.reference)  # its protocol lines: unkeyed runs like it reuse
        yield ReferenceMeasured(self.reference, reused)
        original = Scored(Candidate(recipe, "original", "original"), self.original_bytes)
        yield from self._judge(original, self.reference, reused, 0.0)

    # --- proposing and scoring ---------------------------------------------------
    def _stage(self, candidates: list[Candidate]) -> Iterator[object]:
        """Propose ``candidates``, drop those over the size limit, reuse the
        measured, and score the rest's proxies."""
        from core.jobs.on_runtime import runtime_refusal
        from core.jobs.run import recipe_artifact
        from core.passes.size_estimate import estimate_size

        fresh, request = [], self.request
        for candidate in candidates:
            if candidate.key in self.items:
                continue  # the same recipe from another family
            estimated = estimate_size(request.original.model, candidate.recipe).total_bytes
            self.counts["proposed"] += 1
            yield CandidateProposed(
                candidate.key,
                candidate.label,
                candidate.family,
                candidate.recipe.to_dict(),
                estimated,
            )
            item = Scored(candidate, estimated)
            if self.byte_limit is not None and estimated > self.byte_limit:
                size, bound = sizes_apart(estimated, self.byte_limit)
                yield self._reject(item, "size", f"estimated {size} > limit {bound}")
                continue
            refusal = runtime_refusal(request.runtime, request.original.model, candidate.recipe)
            if refusal is not None:  # never scored: it could not be measured where asked
                yield self._reject(item, "runtime", refusal)
                continue
            self.items[candidate.key] = item
            calibration = recipe_artifact(candidate.recipe, request.settings).get("calibration")
            stored = self.runs.find(candidate.recipe.to_dict(), request.runtime, calibration)
            if stored is not None:
                item.measured = True
                yield from self._judge(item, stored, True, 0.0)
            fresh.append((item, stored is not None))
        if self.proxies:
            yield from self._score([item for item, _ in fresh])
        for item, reused in fresh:
            if not reused and item.candidate.key in self.items and self._keeps(item):
                self.waiting.append(item)

    def _keeps(self, item: Scored) -> bool:
        return item.proxy is not None or not self.proxies

    def _score(self, items: list[Scored]) -> Iterator[object]:
        """Proxy scores for ``items`` (from the cache, else computed); candidates
        sharing a proxy recipe (RTN twins) share one computation."""
        groups: dict[str, tuple[dict, list[Scored]]] = {}
        for item in items:
            proxy_dict = item.candidate.proxy_recipe().to_dict()
            groups.setdefault(self._proxy_key(proxy_dict), (proxy_dict, []))[1].append(item)
        results = self._proxy_scores({k: d for k, (d, _) in groups.items()})
        from core.search.proxy import ProxyFailure

        for key, (_, group) in groups.items():
            result, cached = results.get(key, (None, False))
            for item in group:
                if result is None:
                    yield self._reject(item, "budget", "not scored before the time budget ran out")
                elif isinstance(result, ProxyFailure):
                    yield self._reject(item, "proxy", f"could not be built: {result.message}")
                else:
                    item.proxy = result
                    self.counts["scored"] += 1
                    yield CandidateScored(
                        item.candidate.key,
                        item.candidate.label,
                        result.kl,
                        result.ppl_ratio,
                        result.top1,
                        item.candidate.proxy_is_twin,
                        cached,
                        result.seconds,
                    )
                    reason = None if item.measured else proxy_rejection(item, self.request.limits)
                    if reason:
                        yield self._reject(item, "proxy", reason)

    def _proxy_key(self, recipe_dict: dict) -> str:
        from core.search.proxy_cache import proxy_key

        return proxy_key(self.model_identity, self.spec, recipe_dict)

    def _proxy_scores(self, recipes: dict[str, dict]):
        """{proxy key: (ProxyScore or ProxyFailure, cached)}; keys missing when
        the budget ran out first."""
        from core.search.executors import DeadlineReached
        from core.search.proxy import ProxyScore

        results, todo = {}, []
        for key, recipe in recipes.items():
            cached = self.cache.get(key)
            if cached is not None:
                results[key] = (cached, True)
            else:
                todo.append((key, recipe))
        if self.out_of_time:
            return results
        where = self.executor.description
        self.progress(Progress(f"Search: scoring {len(todo)} proxies ({where})", 0.0))
        try:
            for done, (index, result) in enumerate(
                self.executor.score([r for _, r in todo], self.cancel, self.deadline), 1
            ):
                key = todo[index][0]
                results[key] = (result, False)
                if isinstance(result, ProxyScore):
                    self.cache.put(key, result)
                self.progress(Progress(f"Search: proxies {done}/{len(todo)}", done / len(todo)))
        except DeadlineReached:
            self.out_of_time = True
        return results

    # --- mixed precision ----------------------------------------------------------
    def _mixed(self) -> Iterator[object]:
        from core.passes.size_estimate import estimate_size
        from core.search.candidates import head_options, mixed_candidates, uniform_int8
        from core.search.promotion import QUALITY_OBJECTIVES

        model, space = self.request.original.model, self.request.space
        layers = model.config.num_hidden_layers
        if layers < 2:
            return

        def fits(recipe) -> bool:
            if self.byte_limit is None:
                return True
            return estimate_size(model, recipe).total_bytes <= self.byte_limit

        heads = head_options(space, model)
        if self.goal.key in QUALITY_OBJECTIVES:
            # int8 everywhere is at least as precise as int8 on some layers and
            # int4 on the rest: where it fits, mixed precision cannot be better.
            kept = [head for head in heads if not fits(uniform_int8(head))]
            skipped = [head for head in heads if head not in kept]
            if skipped:
                names = " or ".join(
                    "with the int8 head" if head is not None else "with the head as it is"
                    for head in skipped
                )
                fits_what = (
                    "fits the size limit" if self.byte_limit else "is allowed (no size limit)"
                )
                yield SearchNote(
                    f"mixed int8/int4 not tried {names}: uniform int8 {fits_what} and "
                    "keeps 8 bits on every layer"
                )
            heads = kept
        if not heads:
            return
        sensitivity_map = self.request.sensitivity
        source = "the sensitivity map given"
        if sensitivity_map is None:
            sensitivity_map = self._sensitivity_map()
            if sensitivity_map is None:
                return  # out of time
            source = (
                f"the Sensitivity job's int4 g128 RTN map ({sensitivity_map.resumed} of "
                f"{len(sensitivity_map.cells)} layers read back from its store)"
            )
        ranking = sensitivity_map.most_sensitive_layers(layers)
        by_layer: dict[int, float] = {}
        for cell in sensitivity_map.cells:
            by_layer[cell.layer] = by_layer.get(cell.layer, 0.0) + cell.mean_kl
        source += f": {sensitivity_map.protocol}"
        yield LayersRanked(tuple(ranking), tuple(by_layer.get(i, 0.0) for i in ranking), source)
        yield from self._stage(mixed_candidates(model, space, ranking, fits, heads))

    def _sensitivity_map(self):
        """The Sensitivity job's int4 g128 RTN map of whole layers (its store,
        beside the run store, holds cells measured before: the window's map
        and an earlier search's are read back, not measured again). None when
        the budget ends first."""
        from core.jobs.sensitivity import SensitivityMap, SensitivityRequest, sensitivity
        from core.passes import REGISTRY as R

        store = None
        if self.request.store_path is not None:
            from core.results.sensitivity_store import SensitivityStore

            store = SensitivityStore(self.request.store_path.parent / "sensitivity.jsonl")
        probe = R["int4_weight_only"](128, "rtn")
        request = SensitivityRequest(
            self.request.original, probe, settings=self.request.settings, store=store
        )

        def staged(event: Progress) -> None:
            self.progress(Progress(f"Search: ranking layers: {event.stage}", event.fraction))

        for event in sensitivity(request, staged, self.cancel):
            if time.monotonic() >= self.deadline:
                self.out_of_time = True  # the cells measured so far are stored
                return None
            if isinstance(event, SensitivityMap):
                return event
        return None

    # --- measuring ------------------------------------------------------------------
    def _promote(self, limit: int | None = None) -> Iterator[object]:
        done = 0
        while self.waiting and (limit is None or done < limit):
            if time.monotonic() >= self.deadline:
                self.out_of_time = True
            if self.out_of_time:
                for item in self.waiting:
                    yield self._reject(item, "budget", "not measured: the time budget ran out")
                self.waiting = []
                return
            item = promotion_order(self.waiting, self.goal.key)[0]
            self.waiting.remove(item)
            best_item, best_record = (self.best[0], self.best[1]) if self.best else (None, None)
            reason = cannot_win(item, best_item, best_record, self.goal.key)
            if reason:
                yield self._reject(item, "promotion", reason)
                continue
            calibrated = item.candidate.recipe.needs_calibration()
            expected = self.durations.get(calibrated)
            left = self.deadline - time.monotonic()
            if expected is not None and expected > left:
                yield self._reject(
                    item,
                    "budget",
                    f"its measurement would take about {expected:.0f} s; {left:.0f} s are left",
                )
                continue
            started = time.monotonic()
            try:
                record = yield from self._measure_recipe(
                    item.candidate.recipe, item.candidate.label, self.request.runtime
                )
            except Cancelled:
                raise
            except (WorkbenchError, ValueError, RuntimeError, NotImplementedError) as err:
                reason = f"could not be measured: {err}".splitlines()[0][:300]
                yield self._reject(item, "measurement", reason)
                continue
            seconds = time.monotonic() - started
            self.durations[calibrated] = max(seconds, self.durations.get(calibrated, 0.0))
            done += 1
            yield from self._judge(item, record, False, seconds)

    def _measure_recipe(self, recipe, label: str, runtime: str):
        """Measure with the Run job (the record a Run of this recipe would
        give), yield the new RunRecord, and return it."""
        from core.jobs.run import RunRequest, run
        from core.results.store import RunRecord
        from core.search.reuse import SETTINGS_KEY

        self.cancel.raise_if_cancelled()
        request = self.request
        run_request = RunRequest(request.original, recipe, runtime, request.settings, self.threads)

        def staged(event: Progress) -> None:
            self.progress(Progress(f"Search: measuring {label}: {event.stage}", event.fraction))

        record = None
        for event in run(run_request, staged, self.cancel):
            if isinstance(event, RunRecord):
                record = event
        record = replace(record, artifact={**record.artifact, SETTINGS_KEY: self.key})
        yield record  # the caller stores it: the window's table and chart show it
        return record

    def _judge(self, item: Scored, record, reused: bool, seconds: float) -> Iterator[object]:
        """Report a measured candidate and whether it is the new best."""
        limits = self.request.limits
        violations = tuple(limits.violations(record, self.reference, self.original_bytes))
        increase = ppl_increase_pct(record, self.reference)
        ratio = record.bytes / self.original_bytes
        if item.candidate.family != "original":
            self.counts["reused" if reused else "measured"] += 1
        yield CandidateMeasured(
            item.candidate.key,
            item.candidate.label,
            record,
            reused,
            violations,
            increase,
            ratio,
            seconds,
        )
        if violations or self.goal.value(record) is None:
            return
        if self.best is None or self.goal.rank(record) < self.goal.rank(self.best[1]):
            event = BestSoFar(
                item.candidate.key,
                item.candidate.label,
                record,
                self.goal.value(record),
                increase,
                ratio,
            )
            self.best = (item, record, event)
            yield event

    def _reject(self, item: Scored, stage: str, reason: str) -> CandidateRejected:
        self.items.pop(item.candidate.key, None)
        self.counts["rejected"] += 1
        return CandidateRejected(item.candidate.key, item.candidate.label, stage, reason)
