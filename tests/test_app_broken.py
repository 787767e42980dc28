"""A broken run (its quality collapsed) and a run timed on a busy machine look
different from a healthy run in the table, the trade-off chart and the
compare view, and say why."""

from __future__ import annotations

import json

from PySide6.QtGui import QColor

from app.compare_view import CompareView
from app.main_window import MainWindow
from app.pareto_chart import ParetoChart
from app.results_table import COLUMNS, STATUS_COLUMN, ResultsTable
from app.run_status import BROKEN_COLOR, BUSY_COLOR
from core.results.store import ResultsStore
from tests.test_chart_labels import record

# As core.evaluate.health writes it.
LIKELY = "low rank: 5% of full rank kept"
CAUSE = f"collapsed: perplexity 5.1x the original's > 3x; likely cause: {LIKELY}"
BUSY = "load 1.9 from other processes before the timed runs"
HEALTHY = record()
BROKEN = record(
    recipe={"passes": [{"pass": "low_rank", "rank": 2}]},
    recipe_name="low_rank(2)",
    ppl=95.0,
    decode_ms_per_token=20.0,
    broken=CAUSE,
)
BUSY_RUN = record(
    recipe={"passes": [{"pass": "int8_weight_only"}]},
    recipe_name="int8",
    ppl=18.9,
    decode_ms_per_token=19.0,
    machine_busy=BUSY,
)


def background(item) -> str:
    return item.background().color().name()


def test_table_marks_broken_and_busy_runs(qtbot):
    table = ResultsTable()
    qtbot.addWidget(table)
    for r in (HEALTHY, BROKEN, BUSY_RUN):
        table.add(r)
    healthy, broken, busy = (table.item(row, STATUS_COLUMN) for row in range(3))
    assert healthy.text() == "" and CAUSE not in healthy.toolTip()
    assert broken.text() == "broken" and background(broken) == QColor(BROKEN_COLOR).name()
    assert CAUSE in broken.toolTip()
    # The whole row of a broken run is tinted, and every cell says why on hover.
    assert background(table.item(1, 0)) != background(table.item(0, 0))
    assert CAUSE in table.item(1, 0).toolTip()
    assert busy.text() == "busy machine" and background(busy) == QColor(BUSY_COLOR).name()
    assert BUSY in busy.toolTip()


def test_selected_broken_row_keeps_its_red_marker(qtbot):
    table = ResultsTable()
    qtbot.addWidget(table)
    table.resize(900, 200)
    for r in (HEALTHY, BROKEN):
        table.add(r)
    table.show()
    table.selectRow(1)  # selected to compare or export: the marker must still show

    def colour_at(row: int):
        rect = table.visualItemRect(table.item(row, STATUS_COLUMN))
        image = table.viewport().grab().toImage()
        return image.pixelColor(rect.left() + 2, rect.top() + 2).name()

    assert colour_at(1) == QColor(BROKEN_COLOR).name()
    table.selectRow(0)  # a healthy selected row looks selected as usual
    assert colour_at(0) != QColor(BROKEN_COLOR).name()
    assert colour_at(0) == table.palette().highlight().color().name()


def test_chart_draws_broken_runs_as_red_crosses_off_the_front(qtbot):
    chart = ParetoChart()
    qtbot.addWidget(chart)
    for r in (HEALTHY, BROKEN, BUSY_RUN):
        chart.add(r)
    crosses = chart.broken.points()
    assert [p.data() for p in crosses] == [BROKEN]
    assert crosses[0].symbol() == "x"
    assert BROKEN not in [p.data() for p in chart.scatter.points()]
    assert BROKEN not in chart.front_records()  # not a trade-off, however fast
    label = next(lab for lab in chart.labels if "broken" in lab.textItem.toPlainText())
    assert LIKELY in label.textItem.toPlainText()  # the label: what to change
    hover = chart.broken.opts["tip"](x=20.0, y=95.0, data=BROKEN)
    assert CAUSE in hover and "Perplexity: 95" in hover  # the hover: the measured numbers too


def test_chart_range_fits_healthy_runs_and_pins_a_far_broken_one_to_the_edge(qtbot):
    chart = ParetoChart()
    qtbot.addWidget(chart)
    for r in (HEALTHY, BUSY_RUN, BROKEN):
        chart.add(r)
    low, high = chart.plot.viewRange()[1]
    assert high < 25  # perplexity 95 would squash 18.46 against 18.9
    (cross,) = chart.broken.points()
    assert low < cross.pos().y() < high  # drawn at the top edge, inside the chart
    label = next(lab for lab in chart.labels if "broken" in lab.textItem.toPlainText())
    assert "Perplexity 95, above the chart" in label.textItem.toPlainText()
    hover = chart.broken.opts["tip"](x=cross.pos().x(), y=cross.pos().y(), data=BROKEN)
    assert "Perplexity: 95" in hover  # the measured value, not the drawn position


def test_compare_view_names_the_broken_run(qtbot):
    view = CompareView()
    qtbot.addWidget(view)
    view.show_pair(HEALTHY, BROKEN)
    assert "BROKEN" in view.title.text()
    assert view.table.verticalHeaderItem(0).text() == "Status"  # first: read before numbers
    assert view.cell("Status", 0) == "healthy"
    assert view.cell("Status", 1) == "broken"
    broken = view.table.item(0, 1)
    assert CAUSE in broken.toolTip() and background(broken) == QColor(BROKEN_COLOR).name()
    assert view.cell("Status", 2) == "differs"
    assert view.cell("Perplexity", 1) == "95.00"


def test_window_shows_stored_broken_run_at_start(qtbot, tmp_path):
    store = ResultsStore(tmp_path / "runs.jsonl")
    store.append(HEALTHY)
    store.append(BROKEN)
    window = MainWindow(threads=1, store=store)
    qtbot.addWidget(window)
    assert window.results_table.item(1, STATUS_COLUMN).text() == "broken"
    assert [p.data().recipe_name for p in window.pareto_chart.broken.points()] == ["low_rank(2)"]


def test_window_opens_on_a_damaged_store_and_says_what_it_skipped(qtbot, tmp_path):
    store = ResultsStore(tmp_path / "runs.jsonl")
    store.append(HEALTHY)
    with store.path.open("a", encoding="utf-8") as f:  # a size past Qt's ints: it overflowed
        f.write(json.dumps(HEALTHY.to_dict() | {"bytes": 2**63}) + "\n")
    store.append(BROKEN)
    window = MainWindow(threads=1, store=store)
    qtbot.addWidget(window)
    assert window.results_table.rowCount() == 2
    (message,) = window.notifications.messages()
    assert "1 line(s) of" in message and "could not be read" in message


def test_a_recipe_this_version_cannot_read_is_not_restored_and_says_why(qtbot, tmp_path):
    store = ResultsStore(tmp_path / "runs.jsonl")
    store.append(record(recipe={"format": 2, "passes": []}, recipe_name="from the future"))
    window = MainWindow(threads=1, store=store)
    qtbot.addWidget(window)
    window.restore(store.load()[0])
    (message,) = window.notifications.messages()
    assert "The recipe of from the future cannot be restored" in message
    assert "unknown recipe format 2" in message


def test_two_busy_runs_have_the_same_status_and_say_both(qtbot):
    import dataclasses

    view = CompareView()
    qtbot.addWidget(view)
    assert view.table.horizontalHeaderItem(2).text() == "B / A"  # not "3" while empty
    other = dataclasses.replace(BUSY_RUN, machine_busy="load 3.1 of 2 cores", run_id="other")
    view.show_pair(BUSY_RUN, other)
    assert view.cell("Status", 2) == "same"  # their readings differ, their status does not
    assert "both were timed on a busy machine" in view.cell("Decode ms/token", 2)


def test_a_collapsed_perplexity_and_a_long_recipe_name_keep_the_numbers_in_view(qtbot):
    import dataclasses

    from app.results_table import RECIPE_WIDTH

    table = ResultsTable()
    qtbot.addWidget(table)
    huge = dataclasses.replace(
        BROKEN,
        recipe_name="int8_weight_only() + int8_head(targets=head+embeddings, bits=8) " * 3,
        metrics=dataclasses.replace(
            BROKEN.metrics, ppl=19630797.04, ppl_ci95_low=337787.79, ppl_ci95_high=1140858864.99
        ),
    )
    table.add(huge)
    ppl = next(i for i, (name, _) in enumerate(COLUMNS) if name.startswith("Perplexity"))
    assert table.item(0, ppl).text() == "1.96e+07 (3.38e+05–1.14e+09)"
    assert table.columnWidth(0) <= RECIPE_WIDTH
    assert table.item(0, 0).toolTip().startswith(huge.recipe_name)
