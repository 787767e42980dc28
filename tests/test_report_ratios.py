"""The report divides the exported run's numbers by the original's only where
both were measured alike: speed on the same device, threads and protocol,
quality on the same windows and text. An audit found a decode ratio between
1 and 2 threads, and a perplexity ratio between 10 and 3 windows."""

from __future__ import annotations

from core.export.report import comparison
from core.results.metrics import LMMetrics
from core.results.store import RunRecord


def _run(passes=(), threads=2, eval_protocol="quick: 10 windows", decode=10.0, ppl=20.0):
    return RunRecord(
        model="/m",
        recipe={"format": 1, "passes": list(passes)},
        recipe_name="x",
        backend="torch",
        bytes=1000,
        bytes_by_component={},
        metrics=LMMetrics(decode_ms_per_token=decode, ppl=ppl),
        device="cpu",
        threads=threads,
        bench_protocol="decode 32 tokens",
        eval_protocol=eval_protocol,
    )


def _row(rows, name):
    return next(r for r in rows if r["metric"] == name)


def test_ratios_only_between_runs_measured_alike():
    chosen = _run([{"pass": "int8_weight_only"}], decode=5.0, ppl=21.0)
    alike = comparison(chosen, _run())
    assert _row(alike, "decode_ms_per_token")["ratio"] == 0.5
    assert _row(alike, "ppl")["ratio"] == 21.0 / 20.0

    other = comparison(chosen, _run(threads=1, eval_protocol="quick: 3 windows"))
    decode, ppl = _row(other, "decode_ms_per_token"), _row(other, "ppl")
    assert decode["ratio"] is None and "1 threads against cpu, 2" in decode["why_no_ratio"]
    assert decode["verdict"] is None
    assert ppl["ratio"] is None and "other windows" in ppl["why_no_ratio"]
    assert _row(other, "bytes")["ratio"] == 1.0  # a size is a size


def test_a_collapsed_run_is_never_on_the_reports_front():
    from dataclasses import replace

    from core.export.report import _front_ids
    from core.export.report_chart import tradeoff_png

    good = replace(_run(decode=10.0, ppl=20.0), run_id="good")
    collapsed = replace(_run(decode=1.0, ppl=19.0), run_id="collapsed", broken="collapsed: x")
    charted, front = _front_ids([good, collapsed], "decode_ms_per_token", good)
    assert len(charted) == 2 and front == ["good"]  # it beats "good" on both axes, yet is out
    png = tradeoff_png([(10.0, 20.0), (1.0, 19.0)], ["g", "c"], None, None, "x", "y", "t",
                       front=[0], broken=[False, True])  # fmt: skip
    assert png.startswith(b"\x89PNG")


def test_runs_measured_otherwise_are_never_on_the_reports_front():
    """A run timed with other threads, under another protocol or on a busy
    machine, or scored on other text, would win the front by its protocol."""
    from dataclasses import replace

    from core.export.report import _front_ids

    chosen = replace(_run(decode=10.0, ppl=20.0), run_id="chosen")
    others = [
        replace(_run(threads=1, decode=1.0, ppl=19.0), run_id="threads"),
        replace(_run(decode=1.0, ppl=19.0), run_id="busy", machine_busy="load 3.0"),
        replace(_run(decode=1.0, ppl=19.0), run_id="protocol", bench_protocol="decode 8"),
        replace(_run(decode=1.0, ppl=9.0, eval_protocol="pydoc"), run_id="text"),
        replace(_run(decode=1.0, ppl=19.0), run_id="model", model="/other"),
    ]
    charted, front = _front_ids([chosen, *others], "decode_ms_per_token", chosen)
    assert len(charted) == 6 and front == ["chosen"]
    # a size needs no alike timing, a perplexity still needs the same text and model
    _, front = _front_ids([chosen, *others], "bytes", chosen)
    assert len(front) == 1 and front[0] in ("threads", "busy", "protocol")  # ppl 19 < 20
