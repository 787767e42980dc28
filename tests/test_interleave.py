"""The benchmarks' side-by-side protocol: one untimed run each, then rounds
in a rotating order, one value per configuration per round."""

from __future__ import annotations

from types import SimpleNamespace

from core.measure import interleave
from core.measure.interleave import ONE_RUN, interleaved_rounds


def test_rounds_rotate_and_collect_one_value_each(monkeypatch):
    calls = []

    def fake_run(loaded, settings):
        calls.append(loaded)
        n = float(len(calls))
        return SimpleNamespace(
            prefill_ms=SimpleNamespace(median=n), decode_ms_per_token=SimpleNamespace(median=-n)
        )

    monkeypatch.setattr(interleave, "run_benchmark", fake_run)
    seen_rounds = []
    times = interleaved_rounds({"a": "A", "b": "B", "c": "C"}, 3, on_round=seen_rounds.append)
    assert calls == ["A", "B", "C", "A", "B", "C", "B", "C", "A", "C", "A", "B"]
    assert seen_rounds == [1, 2, 3]
    assert times.prefill_ms == {"a": [4, 9, 11], "b": [5, 7, 12], "c": [6, 8, 10]}
    assert times.decode_ms_per_token["a"] == [-4, -9, -11]


def test_one_real_round_on_a_tiny_model(tiny_llama_dir):
    from core.measure.speed import BenchSettings
    from core.models.loading import load_model

    loaded = load_model(str(tiny_llama_dir), device="cpu")
    settings = BenchSettings(prompt_tokens=8, new_tokens=4, warmup=0, min_repeats=1, min_time_s=0)
    times = interleaved_rounds({"x": loaded, "y": loaded}, 2, settings)
    assert all(len(v) == 2 and min(v) > 0 for v in times.decode_ms_per_token.values())
    assert ONE_RUN.prompt_tokens == 128 and ONE_RUN.warmup == 0
