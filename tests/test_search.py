"""The Search job on a tiny model: limits refused as data, candidates over
the size limit dropped with the reason, proxies scored before anything is
measured and measured in proxy order, the best so far always meeting the
limits, a cancel keeping what was measured, a new search reusing runs and
proxies, the budget stopping new work, mixed precision from a ranking."""

import pytest

from core.errors import Cancelled
from core.jobs.search import SearchRequest, check_inputs, search
from core.models.loading import load_model
from core.progress import CancelToken
from core.results.store import ResultsStore, RunRecord
from core.search import promotion
from core.search.candidates import SearchSpace
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
)
from core.search.limits import Limits, objective
from tests.test_app_compression import TINY_SETTINGS

# int8 and int4 RTN g32, each with and without the int8 head: four recipes.
SMALL = SearchSpace(families=("uniform",), int4_groups=(32,), int4_methods=("rtn",))


@pytest.fixture(scope="module")
def original(tiny_llama_dir):
    return load_model(str(tiny_llama_dir), device="cpu")


def run_search(original, store_path=None, cancel=None, stop_after=None, **options):
    """The job's events; RunRecords stored as they come, as the window and
    the CLI do. ``stop_after``: cancel once that many candidates were measured."""
    options = {"space": SMALL, "budget_s": 300, "workers": 1, **options}  # 1: this process
    request = SearchRequest(
        original, settings=TINY_SETTINGS, threads=1, store_path=store_path, **options
    )
    events, measured = [], 0
    for event in search(request, cancel=cancel):
        events.append(event)
        if isinstance(event, RunRecord) and store_path is not None:
            ResultsStore(store_path).append(event)
        if isinstance(event, CandidateMeasured) and event.label != "original":
            measured += 1
            if stop_after is not None and measured >= stop_after:
                cancel.cancel()
    return events


def of(events, kind, **match):
    """The events of ``kind`` whose fields equal ``match``."""
    chosen = [e for e in events if isinstance(e, kind)]
    return [e for e in chosen if all(getattr(e, k) == v for k, v in match.items())]


@pytest.fixture
def measure_everything(monkeypatch):
    """No candidate skipped for its proxy: every scored one is measured."""
    monkeypatch.setattr(promotion, "EXACT_MARGIN", float("inf"))
    monkeypatch.setattr(promotion, "TWIN_MARGIN", float("inf"))


def test_bad_limits_and_objectives_are_refused_in_one_line():
    from core.results.metrics import ClassifierMetrics

    for bad in (
        {"max_bytes_ratio": 0},
        {"max_kl": float("nan")},
        {"min_accuracy": 1.5},
        {"max_ppl_increase_pct": -1},
        {"max_bytes": 1.5},
    ):
        with pytest.raises(ValueError) as err:
            Limits(**bad)
        assert "\n" not in str(err.value) and next(iter(bad)) in str(err.value)
    with pytest.raises(ValueError, match="unknown objective"):
        objective("fastest")
    with pytest.raises(ValueError, match="above 0"):
        check_inputs(Limits(), "ppl", 0, 2)
    with pytest.raises(ValueError, match="families"):
        SearchSpace(families=("everything",))
    with pytest.raises(ValueError, match="does not measure ppl"):
        Limits(max_ppl_increase_pct=5).check_metrics(ClassifierMetrics)
    assert Limits(max_bytes_ratio=0.5, max_bytes=100).byte_limit(1000) == 100


def test_candidates_over_the_size_limit_are_dropped_with_the_reason(original):
    events = run_search(original, limits=Limits(max_bytes_ratio=0.3))
    started = events[0]
    limit = started.byte_limit
    assert limit == int(0.3 * started.original_bytes)
    proposed = of(events, CandidateProposed)
    dropped = {e.key: e for e in of(events, CandidateRejected, stage="size")}
    assert len(proposed) == 4 and dropped  # the recipes without the int8 head are too big
    for candidate in proposed:
        assert (candidate.key in dropped) == (candidate.estimated_bytes > limit)
    for event in dropped.values():
        assert "> limit " in event.reason and event.reason.endswith((" MB", " bytes"))
    scored = {e.key for e in of(events, CandidateScored)}
    assert not scored & set(dropped)  # nothing dropped is scored or measured
    best = of(events, BestSoFar)[-1]
    assert best.record.bytes <= limit and best.key not in dropped


def test_proxies_come_first_and_set_the_measuring_order(original, measure_everything):
    events = run_search(original, objective="kl")
    scored = {e.key: e.kl for e in of(events, CandidateScored)}
    measured = [e for e in of(events, CandidateMeasured) if e.label != "original"]
    assert len(scored) == 4 and len(measured) == 4
    first_measured = events.index(measured[0])
    assert all(events.index(e) < first_measured for e in of(events, CandidateScored))
    order = [scored[e.key] for e in measured]
    assert order == sorted(order)
    # The proxy on the dev split ranks the way the measured KL on the report split does.
    assert measured[0].record.metric("mean_kl") < measured[-1].record.metric("mean_kl")


def test_the_best_so_far_always_meets_the_limits(original, measure_everything):
    # The smallest configuration that keeps the KL small: the int4 ones break the
    # KL limit (on their proxy or when measured), int8 + head meets it.
    limits = Limits(max_kl=1e-5)
    events = run_search(original, objective="bytes", limits=limits)
    reference = of(events, ReferenceMeasured)[0].record
    original_bytes = events[0].original_bytes
    bests = of(events, BestSoFar)
    assert bests
    for best in bests:
        assert limits.violations(best.record, reference, original_bytes) == []
    meeting = [
        e.record
        for e in of(events, CandidateMeasured)
        if not limits.violations(e.record, reference, original_bytes)
    ]
    assert bests[-1].record.bytes == min(r.bytes for r in meeting)
    broke_kl = [e for e in of(events, CandidateRejected) if "KL" in e.reason]
    broke_kl += [e for e in of(events, CandidateMeasured) if any("KL" in v for v in e.violations)]
    assert broke_kl  # the limit did rule something out
    assert of(events, SearchFinished)[0].best == bests[-1]


def test_cancel_keeps_what_was_measured_and_a_new_search_reuses_it(
    original, tmp_path, measure_everything
):
    store = tmp_path / "runs.jsonl"
    cancel, events = CancelToken(), []
    with pytest.raises(Cancelled):
        for event in search(
            SearchRequest(
                original, objective="kl", settings=TINY_SETTINGS, threads=1, space=SMALL,
                store_path=store, workers=1,
            ),
            cancel=cancel,
        ):  # fmt: skip
            events.append(event)
            if isinstance(event, RunRecord):
                ResultsStore(store).append(event)
            if isinstance(event, CandidateMeasured) and event.label != "original":
                cancel.cancel()
    kept = ResultsStore(store).load()
    first = [e for e in of(events, CandidateMeasured) if e.label != "original"]
    assert len(first) == 1 and len(kept) == 2  # the original and that one candidate
    reference = of(events, ReferenceMeasured)[0].record
    assert {r.run_id for r in kept} == {first[0].record.run_id, reference.run_id}

    again = run_search(original, store_path=store, objective="kl")
    assert of(again, ReferenceMeasured)[0].reused
    reused = {e.key: e for e in of(again, CandidateMeasured, reused=True)}
    assert first[0].key in reused
    assert reused[first[0].key].record.run_id == first[0].record.run_id
    new_records = [e for e in again if isinstance(e, RunRecord)]
    assert first[0].record.recipe not in [r.recipe for r in new_records]
    assert len(new_records) == 3  # the other three candidates; the original is reused too
    assert all(e.cached for e in of(again, CandidateScored))  # every proxy from the cache
    finished = of(again, SearchFinished)[0]
    assert (finished.reused, finished.measured) == (1, 3)


def test_a_run_measured_outside_the_search_is_reused(original, tmp_path):
    """A Run of the same recipe under the same settings (the Run button) is
    found once the search has learnt what those settings print."""
    from core.jobs.run import RunRequest, run
    from core.passes import REGISTRY as R
    from core.passes.recipe import Recipe

    store = tmp_path / "runs.jsonl"
    recipe = Recipe((R["int8_weight_only"](), R["int8_head"]()))
    request = RunRequest(original, recipe, "torch", TINY_SETTINGS, threads=1)
    (record,) = [e for e in run(request) if isinstance(e, RunRecord)]
    ResultsStore(store).append(record)
    events = run_search(original, store_path=store, limits=Limits(max_bytes_ratio=0.3))
    reused = of(events, CandidateMeasured, reused=True)
    assert [e.record.run_id for e in reused] == [record.run_id]


def test_the_budget_stops_new_work(original):
    events = run_search(original, budget_s=0.001)
    finished = of(events, SearchFinished)[0]
    assert finished.stopped == "time budget"
    assert of(events, ReferenceMeasured)  # the yardstick is always measured
    assert not [e for e in of(events, CandidateMeasured) if e.label != "original"]
    budget = of(events, CandidateRejected, stage="budget")
    assert len(budget) == len(of(events, CandidateProposed)) == 4


def test_mixed_precision_follows_the_ranking(original, tmp_path):
    from core.jobs.sensitivity import SensitivityCell, SensitivityMap

    given = SensitivityMap(
        {"pass": "int4_weight_only"},
        "made up for the test",
        (SensitivityCell(0, "", 0.001, 1.0, 1, 2), SensitivityCell(1, "", 0.01, 1.0, 2, 2)),
    )
    space = SearchSpace(families=("mixed",), int4_groups=(32,), int4_methods=("gptq", "rtn"))
    # 0.47x: int8 everywhere does not fit without the int8 head, int8 on one layer does.
    limits = Limits(max_bytes_ratio=0.47)
    events = run_search(original, space=space, sensitivity=given, limits=limits)
    ranked = of(events, LayersRanked)[0]
    assert ranked.layers == (1, 0) and "given" in ranked.source
    (note,) = of(events, SearchNote)  # with the int8 head, uniform int8 fits: no mixed
    assert "with the int8 head" in note.text and "uniform int8 fits" in note.text
    proposed = of(events, CandidateProposed)
    assert len(proposed) == 2 and all(e.family == "mixed" for e in proposed)
    for event in proposed:
        int8, int4 = event.recipe["passes"]  # no head pass
        assert (int8["pass"], int8["layers"]) == ("int8_weight_only", "1")
        assert (int4["pass"], int4["layers"]) == ("int4_weight_only", "0")
    twins = {e.key: e for e in of(events, CandidateScored)}
    gptq = [e for e in proposed if e.recipe["passes"][1]["method"] == "gptq"]
    assert gptq and all(twins[e.key].twin for e in gptq)  # scored by its RTN twin

    # No map given: the Sensitivity job makes one and stores it; the next search reads it back.
    store = tmp_path / "runs.jsonl"
    probed = run_search(original, space=space, limits=limits, store_path=store)
    ranked = of(probed, LayersRanked)[0]
    assert sorted(ranked.layers) == [0, 1] and all(kl > 0 for kl in ranked.kl)
    assert ranked.kl == tuple(sorted(ranked.kl, reverse=True))
    assert "(0 of 2 layers read back" in ranked.source
    again = of(run_search(original, space=space, limits=limits, store_path=store), LayersRanked)
    assert again[0].layers == ranked.layers and "(2 of 2 layers read back" in again[0].source
    # For size, not quality, mixed is tried even where int8 fits.
    smallest = run_search(original, space=space, objective="bytes", store_path=store)
    assert not of(smallest, SearchNote) and len(of(smallest, CandidateProposed)) == 4


def test_a_classifier_is_searched_by_measurement_alone(tiny_classifier_dir):
    classifier = load_model(str(tiny_classifier_dir), device="cpu")
    events = run_search(
        classifier, objective="accuracy", limits=Limits(min_accuracy=0.01, max_bytes_ratio=0.8)
    )
    assert events[0].scoring == "no proxy for this model kind"
    assert not of(events, CandidateScored)  # the proxy reads next-token predictions
    measured = [e for e in of(events, CandidateMeasured) if e.label != "original"]
    assert measured and all(e.record.metric("accuracy") is not None for e in measured)
    best = of(events, SearchFinished)[0].best
    assert best.value == max(e.record.metric("accuracy") for e in measured if not e.violations)


def test_candidates_the_runtime_cannot_run_are_dropped_before_scoring(original):
    """On ONNX Runtime the PyTorch int8/int4 layers cannot be traced: a sweep saw
    every candidate proposed, proxy-scored, then dropped at measurement."""
    events = run_search(original, runtime="ort-w8", budget_s=60)
    proposed = of(events, CandidateProposed)
    refused = of(events, CandidateRejected, stage="runtime")
    assert proposed and len(refused) == len(proposed)  # SMALL holds only PyTorch quantizers
    assert all("ONNX" in e.reason for e in refused)
    assert not of(events, CandidateScored)  # no proxy spent on them


def test_a_family_the_runtime_refuses_is_refused_before_any_work(tmp_path):
    from core.errors import UnsupportedModelError
    from tests.tiny_models import save_tiny_model

    folder = save_tiny_model("gpt2", tmp_path / "gpt2")
    gpt2 = load_model(str(folder), device="cpu")
    with pytest.raises(UnsupportedModelError):
        run_search(gpt2, runtime="ort-fused-w4")


def test_a_size_over_its_limit_reads_apart_from_it():
    from core.search.limits import sizes_apart

    assert sizes_apart(212_000, 200_000) == ("0.21 MB", "0.20 MB")  # not 0.2 > 0.2
    assert sizes_apart(134_600_000, 134_500_000) == ("134.6 MB", "134.5 MB")
    assert sizes_apart(5_000, 4_000) == ("5,000 bytes", "4,000 bytes")
