"""Noise you can see (issue 15, item 4): a timed number is called faster or
slower only when its p10-p90 range is apart from the other's; every view
(trade-off chart, compare view, side by side, report, CLI) uses that one
rule and draws or names the spread."""

from __future__ import annotations

import pytest

from core.measure.compare import (
    FASTER,
    NO_SPREAD,
    SLOWER,
    WITHIN_NOISE,
    SpeedRange,
    speed_range,
    speed_verdict,
    steps_range,
)
from tests.test_health import _record


def timed(run_id: str, median: float, p10: float | None, p90: float | None, **more):
    return _record(
        run_id=run_id,
        recipe_name=run_id,
        recipe={"format": 1, "passes": [] if run_id == "orig" else [{"pass": "int8_weight_only"}]},
        decode_ms_per_token=median,
        decode_ms_p10=p10,
        decode_ms_p90=p90,
        tokens_per_s=1000 / median,
        **more,
    )


ORIGINAL = timed("orig", 50.0, 48.0, 53.0, ppl_ci95_low=19.0, ppl_ci95_high=21.5)
CLOSE = timed("close", 47.0, 45.0, 49.0, ppl=20.4, ppl_ci95_low=19.2, ppl_ci95_high=21.8)
FAR = timed("far", 30.0, 29.0, 31.5, ppl=22.0)
BARE = timed("bare", 20.0, None, None)  # stored without its spread


def test_overlapping_ranges_are_noise_and_apart_ones_have_a_direction():
    a = SpeedRange(50.0, 48.0, 53.0)
    assert speed_verdict(a, SpeedRange(47.0, 45.0, 49.0)) == WITHIN_NOISE  # medians 6% apart
    assert speed_verdict(a, SpeedRange(30.0, 29.0, 31.5)) == FASTER
    assert speed_verdict(SpeedRange(30.0, 29.0, 31.5), a) == SLOWER
    assert speed_verdict(a, SpeedRange(53.5, 53.0, 54.0)) == WITHIN_NOISE  # touching ends
    assert speed_verdict(a, None) == speed_verdict(None, a) == NO_SPREAD
    # A rate: higher is faster, so the direction turns.
    slow, quick = SpeedRange(20.0, 19.0, 21.0, False), SpeedRange(40.0, 38.0, 42.0, False)
    assert speed_verdict(slow, quick) == FASTER and speed_verdict(quick, slow) == SLOWER


def test_ranges_come_from_the_stored_metrics_and_rates_invert_times():
    r = speed_range(FAR.metric, "decode_ms_per_token")
    assert (r.median, r.p10, r.p90, r.lower_is_better) == (30.0, 29.0, 31.5, True)
    rate = speed_range(FAR.metric, "tokens_per_s")
    assert rate.p10 == pytest.approx(1000 / 31.5) and rate.p90 == pytest.approx(1000 / 29.0)
    assert not rate.lower_is_better
    assert speed_range(BARE.metric, "decode_ms_per_token") is None
    assert speed_range(FAR.metric, "prefill_ms") is None  # its spread is not stored
    tokens = steps_range([10.0, 11.0, 12.0, 13.0, 50.0])
    assert tokens.median == 12.0 and tokens.p10 < 11.0 and tokens.p90 > 13.0
    assert steps_range([10.0]) is None


def test_compare_view_says_within_noise_when_the_ranges_overlap(qtbot):
    from app.compare_view import CompareView

    view = CompareView()
    qtbot.addWidget(view)
    view.show_pair(ORIGINAL, CLOSE)
    assert view.cell("Decode ms/token", 2) == "0.940x, within noise"
    assert view.cell("Tokens/s", 2).endswith("within noise")
    assert view.cell("Prefill ms", 2) == "1.000x, no spread recorded"
    view.show_pair(ORIGINAL, FAR)
    assert view.cell("Decode ms/token", 2) == "0.600x, faster"
    assert view.cell("Tokens/s", 2).endswith(", faster")
    view.show_pair(FAR, ORIGINAL)
    assert view.cell("Decode ms/token", 2).endswith(", slower")
    view.show_pair(ORIGINAL, BARE)  # 2.5x by the medians, but no spread: not "faster"
    assert view.cell("Decode ms/token", 2) == "0.400x, no spread recorded"
    assert view.cell("Size MB", 2) == "1.000x"  # not timed: a plain ratio


def test_trade_off_chart_draws_each_points_spread(qtbot):
    from app.pareto_chart import ParetoChart

    chart = ParetoChart()
    qtbot.addWidget(chart)
    for r in (ORIGINAL, CLOSE, FAR, BARE):
        chart.add(r)
    bars = chart.spreads
    by_x = {x: i for i, x in enumerate(bars["x"])}
    close = by_x[47.0]
    assert (bars["left"][close], bars["right"][close]) == pytest.approx((2.0, 2.0))
    assert (bars["bottom"][close], bars["top"][close]) == pytest.approx((1.2, 1.4))
    far = by_x[30.0]
    assert (bars["left"][far], bars["right"][far]) == (1.0, 1.5)
    assert bars["bottom"][far] == bars["top"][far] == 0.0  # no interval stored: no y bar
    assert 20.0 not in by_x  # BARE: neither spread stored, no bar at all
    assert chart.error_bars.isVisible()
    low, high = chart.plot.viewRange()[0]
    assert low < 29.0 and high > 53.0  # every bar inside the chart
    hover = chart.scatter.opts["tip"](x=47.0, y=20.4, data=CLOSE)
    assert "Decode ms/token: 47 (45 to 49)" in hover and "(19.2 to 21.8)" in hover
    chart.x_axis.setCurrentText("Size MB")  # size is exact: only the quality bars remain
    assert all(v == 0.0 for v in chart.spreads["left"] + chart.spreads["right"])


def test_side_by_side_verdict_uses_the_per_token_ranges(qtbot):
    from app.demo_panel import DemoPanel
    from core.runtime.generation import GenerationSummary, TextToken
    from core.runtime.side_by_side import COMPRESSED, ORIGINAL, PaneEvent

    def feed(panel, steps_ms: dict[str, list[float]]):
        panel.begin("int8")
        for pane, steps in steps_ms.items():
            for i, ms in enumerate([100.0, *steps]):
                panel.on_event(PaneEvent(pane, TextToken(i, 1, "a", 0.0, ms / 1e3)))
        for pane, steps in steps_ms.items():
            rate = 1000 * len(steps) / sum(steps)
            summary = GenerationSummary(3, len(steps) + 1, "a", 100.0, None, rate, "length")
            panel.on_event(PaneEvent(pane, summary))
        return panel.verdict.text()

    panel = DemoPanel()
    qtbot.addWidget(panel)
    noisy = feed(panel, {ORIGINAL: [20, 22, 30, 21, 25, 24], COMPRESSED: [19, 21, 28, 20, 23, 22]})
    assert "x the original's tokens/s" in noisy and "within noise" in noisy
    assert "faster" not in noisy
    apart = feed(panel, {ORIGINAL: [40, 41, 42, 43, 44, 45], COMPRESSED: [20, 21, 22, 23, 21, 20]})
    assert "faster: the per-token p10-p90 ranges are apart" in apart
    assert panel.minimumSizeHint().width() < 800  # the verdict wraps: it widened the window


def test_report_and_cli_name_noise_and_never_call_overlapping_runs_faster(capsys):
    from core.cli.record_text import print_record
    from core.export.report import build_report, render_html
    from core.passes import REGISTRY
    from core.passes.recipe import Recipe

    int8 = Recipe((REGISTRY["int8_weight_only"](),))
    for run, verdict in ((CLOSE, WITHIN_NOISE), (FAR, FASTER), (BARE, NO_SPREAD)):
        report = build_report("m", int8, [ORIGINAL, run], run.run_id, {}, ("report",), {})
        rows = {r["metric"]: r for r in report["comparison"]}
        assert rows["decode_ms_per_token"]["verdict"] == verdict
        assert rows["decode_ms_per_token"]["verdict_same_runtime"] == verdict
        assert "verdict" not in rows["bytes"]
        ratio = run.metrics.decode_ms_per_token / 50.0
        assert f"<td>{ratio:.3f}×, {verdict}</td>" in render_html(report)
        print_record(run, ORIGINAL)
        line = capsys.readouterr().out.splitlines()[-1]
        assert line.startswith(f"  decode {ratio:.3f}x the original's") and verdict in line
    print_record(CLOSE)  # no stored original: no comparison line
    assert "the original's" not in capsys.readouterr().out
