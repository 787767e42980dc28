"""The window compares two runs only where they were measured alike, by the
rule the CLI and the report follow (core.measure.compare.incomparable): an
audit found the side-by-side table calling a 2-thread run "faster" than a
1-thread one, a perplexity on Python help divided by one on news, and the
trade-off front won by runs timed under a shorter protocol."""

from __future__ import annotations

import json

from app.compare_view import CompareView
from app.pareto_chart import ParetoChart, _how_else
from app.sizes import UNIT
from core.results.store import ResultsStore
from tests.test_chart_labels import record

INT8 = {"passes": [{"pass": "int8_weight_only"}]}
ORIGINAL = record(top1_agreement=1.0, mean_kl=0.0, created=1.0, ppl=18.0)


def _int8(**changes):
    fields = dict(recipe=INT8, recipe_name="int8", decode_ms_per_token=10.0, ppl=18.5)
    return record(**{**fields, "top1_agreement": 0.95, "mean_kl": 0.01, **changes})


def test_side_by_side_gives_no_ratio_between_runs_measured_otherwise(qtbot):
    view = CompareView()
    qtbot.addWidget(view)
    view.show_pair(ORIGINAL, _int8(threads=1))
    assert view.cell("Decode ms/token", 2).startswith("not comparable: timed on cpu, 2 threads")
    assert view.cell("Perplexity", 2) == f"{18.5 / 18.0:.3f}x"  # scored alike
    assert view.cell("Runtime", 1) == "torch on cpu, 1 threads"
    assert view.cell("Latency ms", 2) == "–"  # measured by neither: nothing to compare

    view.show_pair(ORIGINAL, _int8(eval_protocol="Python help"))
    assert view.cell("Perplexity", 2) == "not comparable: scored on other windows or text"
    assert view.cell("Decode ms/token", 2) != "not comparable"  # timed alike

    view.show_pair(ORIGINAL, _int8(machine_busy="load 1.9"))
    assert "busy machine" in view.cell("Decode ms/token", 2)


def test_the_originals_agreement_with_itself_is_not_shown_as_a_measurement(qtbot):
    view = CompareView()
    qtbot.addWidget(view)
    view.show_pair(ORIGINAL, _int8())
    assert view.cell("Top-1 agreement", 0) == "the original itself"
    assert view.cell("Mean KL", 0) == "the original itself"
    assert view.cell("Top-1 agreement", 2) == "–" and view.cell("Mean KL", 2) == "–"
    assert view.cell("Top-1 agreement", 1) == "0.950"


def test_front_holds_only_runs_measured_like_the_latest_original(qtbot):
    chart = ParetoChart()
    qtbot.addWidget(chart)
    fair = _int8(recipe_name="fair", created=2.0)
    by_text = _int8(recipe_name="by text", ppl=8.0, decode_ms_per_token=9.0, eval_protocol="x")
    by_threads = _int8(recipe_name="by threads", ppl=17.0, decode_ms_per_token=5.0, threads=8)
    chart.add_many([ORIGINAL, fair, by_text, by_threads])
    chart.show_model("m", classifier=False)
    front = {r.recipe_name for r in chart.front_records()}
    assert front == {"original", "fair"}  # each other one beats both only by its protocol
    hollow = {spot.data().recipe_name for spot in chart.elsewhere.points()}
    assert hollow == {"by text", "by threads"}
    tip = chart._tip(0, 0, by_threads)
    assert "off the front: timed on cpu, 2 threads against cpu, 8" in tip
    assert "torch on cpu, 8 threads" in tip

    chart.x_axis.setCurrentText(f"Size {UNIT}")
    front = {r.recipe_name for r in chart.front_records()}
    assert "by threads" in front and "by text" not in front  # a size needs no alike timing


def test_a_stored_collapsed_line_without_its_flag_loads_flagged(tmp_path):
    """A line written before the flag existed, or merged from elsewhere."""
    line = _int8(top1_agreement=0.3, ppl=90.0).to_dict() | {"broken": ""}
    line["metrics"]["ppl_ratio"] = 5.0
    store = ResultsStore(tmp_path / "runs.jsonl")
    store.path.write_text(json.dumps(line) + "\n")
    (loaded,) = store.load()
    assert loaded.broken.startswith("collapsed: top-1 agreement 0.30 < 0.5; perplexity 5.0x")
    healthy = _int8().to_dict()
    store.path.write_text(json.dumps(healthy) + "\n")
    assert store.load()[0].broken == ""


def test_results_table_names_each_perplexitys_text_and_the_originals_agreement(qtbot):
    from app.results_table import COLUMNS, ResultsTable
    from core.evaluate.perplexity import PerplexityProtocol

    news, pydoc = PerplexityProtocol().describe(), PerplexityProtocol(source="pydoc").describe()
    table = ResultsTable()
    qtbot.addWidget(table)
    table.add_many([record(top1_agreement=1.0, eval_protocol=news), _int8(eval_protocol=pydoc)])
    names = [name for name, _ in COLUMNS]
    text, agree = names.index("Eval text"), names.index("Top-1 agree")
    assert table.item(0, text).text() == "report split of news articles"
    assert table.item(1, text).text() == "report split of Python help topics"
    assert (table.item(0, agree).text(), table.item(1, agree).text()) == ("itself", "0.950")


def test_text_of_reads_a_users_file_and_refuses_other_lines(tmp_path):
    from core.evaluate.perplexity import PerplexityProtocol
    from core.evaluate.protocol_text import text_of

    own = tmp_path / "notes; v2.txt"
    own.write_text("word " * 5000)
    line = PerplexityProtocol(text_file=str(own)).describe()
    assert text_of(line) == "file notes; v2.txt"
    assert text_of("quick: classifier argmax, first 200 film reviews") == ""


def test_runs_of_the_folders_older_files_are_not_compared_on_quality(qtbot):
    """Same folder, other weights (its files changed between the runs): a
    perplexity of those is another model's, though the name is the same."""
    new, old = {"source_sha256": "new"}, {"source_sha256": "old"}
    original = record(top1_agreement=1.0, mean_kl=0.0, created=3.0, ppl=18.0, artifact=new)
    stale = _int8(recipe_name="stale", ppl=9.0, decode_ms_per_token=9.0, artifact=old)
    fresh = _int8(recipe_name="fresh", created=4.0, artifact=new)
    view = CompareView()
    qtbot.addWidget(view)
    view.show_pair(original, stale)
    assert view.cell("Perplexity", 2).startswith("not comparable: scored on other files")
    view.show_pair(original, _int8())  # a run stored before digests: taken on its name
    assert view.cell("Perplexity", 2) == f"{18.5 / 18.0:.3f}x"
    chart = ParetoChart()
    qtbot.addWidget(chart)
    chart.add_many([original, stale, fresh])
    chart.show_model("m", classifier=False)
    assert {r.recipe_name for r in chart.front_records()} == {"original", "fresh"}
    assert "other files of the model" in _how_else(stale, original)
