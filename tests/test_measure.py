import json

import pytest

from core.errors import Cancelled
from core.measure.speed import BenchResult, BenchSettings, RunTiming, Spread, benchmark
from core.models.loading import load_model
from core.progress import CancelToken
from core.runtime.torch_runner import TokenStep


@pytest.fixture(scope="module")
def loaded(tiny_gpt2_dir):
    return load_model(str(tiny_gpt2_dir), device="cpu")


def test_protocol_warmup_repeats_and_fields(loaded):
    settings = BenchSettings(
        prompt_tokens=16, new_tokens=8, warmup=2, min_repeats=3, min_time_s=0.0
    )
    events = list(benchmark(loaded, settings))
    runs = [e for e in events if isinstance(e, RunTiming)]
    steps = [e for e in events if isinstance(e, TokenStep)]
    result = events[-1]
    assert isinstance(result, BenchResult)
    assert [r.warmup for r in runs] == [True, True, False, False, False]
    assert len(steps) == 5 * 8  # stop tokens are ignored: every run does the same work
    timed = [r.decode_ms_per_token for r in runs if not r.warmup]
    assert result.runs == 3
    assert result.decode_ms_per_token.median == sorted(timed)[1]
    assert result.tokens_per_s == pytest.approx(1000 / result.decode_ms_per_token.median)
    assert result.peak_memory_bytes > 0
    data = json.loads(json.dumps(result.to_dict()))
    for key in ("prefill_ms", "decode_ms_per_token", "tokens_per_s", "peak_memory_bytes"):
        assert data[key] > 0
    env = data["environment"]
    assert env["device"] == "cpu" and env["dtype"] == "float32" and env["threads"] >= 1
    assert env["torch"] and env["transformers"] and env["runner"] == "torch-eager"


def test_minimum_time_keeps_repeating(loaded):
    settings = BenchSettings(
        prompt_tokens=8, new_tokens=4, warmup=0, min_repeats=1, min_time_s=0.3, max_repeats=10_000
    )
    result = [e for e in benchmark(loaded, settings)][-1]
    assert result.runs > 1


def test_max_repeats_caps(loaded):
    settings = BenchSettings(
        prompt_tokens=8, new_tokens=4, warmup=0, min_repeats=2, min_time_s=1000, max_repeats=3
    )
    assert [e for e in benchmark(loaded, settings)][-1].runs == 3


def test_cancel_raises(loaded):
    cancel = CancelToken()
    events = benchmark(loaded, BenchSettings(prompt_tokens=8, new_tokens=50), cancel)
    next(events)
    cancel.cancel()
    with pytest.raises(Cancelled):
        list(events)


def test_spread():
    s = Spread.of([float(v) for v in range(1, 12)])
    assert (s.median, s.p10, s.p90) == (6.0, 2.0, 10.0)
    assert Spread.of([3.0]) == Spread(3.0, 3.0, 3.0)


def test_settings_validated():
    with pytest.raises(ValueError):
        BenchSettings(new_tokens=1)
    with pytest.raises(ValueError):
        BenchSettings(min_repeats=5, max_repeats=2)
