"""Proxies scored off this process give the numbers this process gives: a
local Ray cluster (marker ``ray``; `pytest -m ray` selects it) running the
whole search, and the local pool of spawned workers; a cancel stops the
pool's running task."""

import pytest

from core.errors import Cancelled
from core.jobs.search import SearchRequest, search
from core.models.loading import load_model
from core.passes import REGISTRY as R
from core.passes.recipe import Recipe
from core.progress import CancelToken
from core.search.candidates import SearchSpace
from core.search.events import CandidateScored, SearchStarted
from core.search.executors import PoolExecutor
from core.search.proxy import ProxyScore, ProxyScorer, ProxySpec, dev_protocol
from tests.test_app_compression import TINY_SETTINGS

# int8 and int4 RTN g32: two candidates, two proxies.
TWO = SearchSpace(families=("uniform",), int4_groups=(32,), int4_methods=("rtn",), int8_head=False)


@pytest.fixture(scope="module")
def original(tiny_llama_dir):
    return load_model(str(tiny_llama_dir), device="cpu")


def proxy_scores(original, **options) -> tuple[SearchStarted, dict]:
    options = {"workers": 1, **options}  # without Ray: this process, on any machine
    request = SearchRequest(original, settings=TINY_SETTINGS, threads=1, space=TWO, **options)
    events = list(search(request))
    scored = [e for e in events if isinstance(e, CandidateScored)]
    return events[0], {e.label: (e.kl, e.ppl_ratio, e.top1) for e in scored}


@pytest.mark.ray
def test_a_local_ray_cluster_scores_as_this_process_does(original):
    ray = pytest.importorskip("ray")  # the test extra installs it
    ray.init(num_cpus=1, include_dashboard=False, logging_level="ERROR")
    try:
        started, on_ray = proxy_scores(original, ray_address="auto")
    finally:
        ray.shutdown()
    assert started.scoring.startswith("Ray tasks on a cluster of 1 CPU")
    here_started, here = proxy_scores(original)
    assert here_started.scoring.startswith("in this process")
    assert set(on_ray) == set(here) == {"int8", "int4 g32 rtn"}
    for label, numbers in here.items():
        assert on_ray[label] == pytest.approx(numbers, rel=1e-5, abs=1e-9)


def test_the_local_pool_scores_as_this_process_does_and_stops_on_cancel(original, tiny_llama_dir):
    spec = ProxySpec(str(tiny_llama_dir), "float32", dev_protocol(TINY_SETTINGS, 2), 4, 64, "pydoc")
    recipes = [
        Recipe((R["int4_weight_only"](32, "rtn"),)).to_dict(),
        Recipe((R["prune_mlp"](0.25), R["int8_weight_only"]())).to_dict(),  # calibrates
    ]
    scorer = ProxyScorer(original, spec)
    here = [scorer.score(recipe) for recipe in recipes]
    pool = PoolExecutor(spec, workers=1)
    try:
        there = dict(pool.score(recipes, CancelToken()))
        cancel, seen = CancelToken(), []
        with pytest.raises(Cancelled):  # stopped with the second recipe pending or running
            for result in pool.score(recipes, cancel):
                seen.append(result)
                cancel.cancel()
        assert len(seen) == 1 and pool._pool is None  # its processes were ended
    finally:
        pool.close()
    for index, score in enumerate(here):
        assert isinstance(score, ProxyScore) and isinstance(there[index], ProxyScore)
        assert (there[index].kl, there[index].ppl_ratio) == pytest.approx(
            (score.kl, score.ppl_ratio), rel=1e-5, abs=1e-9
        )
