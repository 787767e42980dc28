"""The menu bar and shortcuts, and what the window keeps between sessions
(geometry, splitters, tab, last recipe), with a QSettings file of the
test's own: the user's settings are never read."""

from __future__ import annotations

import pytest
from PySide6.QtCore import QSettings, Qt
from PySide6.QtGui import QKeySequence

from app.main_window import MainWindow
from core.passes import REGISTRY
from core.passes.recipe import Recipe
from core.results.store import ResultsStore
from core.runtime.generation import GenerationSummary
from tests.test_app_compression import TINY_SETTINGS, load


@pytest.fixture
def settings(tmp_path):
    return QSettings(str(tmp_path / "workbench.ini"), QSettings.Format.IniFormat)


def open_window(qtbot, tmp_path, settings) -> MainWindow:
    w = MainWindow(
        threads=1,
        store=ResultsStore(tmp_path / "runs.jsonl"),
        experiment_settings=TINY_SETTINGS,
        settings=settings,
    )
    qtbot.addWidget(w)
    w.show()
    return w


def keys(action) -> list[str]:
    return [k.toString(QKeySequence.SequenceFormat.PortableText) for k in action.shortcuts()]


def test_menus_and_shortcuts(qtbot, tmp_path, settings):
    w = open_window(qtbot, tmp_path, settings)
    menus = [a.text().replace("&", "") for a in w.menuBar().actions()]
    assert menus == ["File", "Run", "Help"]
    file_items = [a.text().replace("&", "") for a in w.menuBar().actions()[0].menu().actions()]
    assert file_items == ["Open model folder…", "Export selected run…", "", "Quit"]
    assert keys(w.open_action) == ["Ctrl+O"]
    assert keys(w.export_action) == ["Ctrl+E"]
    assert keys(w.quit_action) == ["Ctrl+Q"]
    assert keys(w.run_action) == ["Ctrl+R"]
    assert keys(w.cancel_action) == ["Esc", "Ctrl+."]
    w.shortcuts_action.trigger()
    listed = w.shortcuts_dialog.table
    rows = {listed.item(r, 0).text(): listed.item(r, 1).text() for r in range(listed.rowCount())}
    assert rows["Run the configuration"] == QKeySequence("Ctrl+R").toString(
        QKeySequence.SequenceFormat.NativeText
    )
    assert len(rows) == 6
    w.about_action.trigger()
    assert w.about.isVisible() and "Compression Workbench 0." in w.about.text()
    w.about.close()
    assert not w.export_action.isEnabled()  # nothing selected: nothing to export
    assert "Select one run" in w.export_button.toolTip()
    w.quit_action.trigger()
    assert not w.isVisible()


def test_open_loads_through_the_model_panel_and_actions_follow_busy(
    qtbot, tmp_path, settings, tiny_gpt2_dir, monkeypatch
):
    w = open_window(qtbot, tmp_path, settings)
    assert not w.run_action.isEnabled()  # no model yet, like the Run button
    assert not w.cancel_action.isEnabled()
    monkeypatch.setattr(w, "_ask_model_folder", lambda: str(tiny_gpt2_dir))
    with qtbot.waitSignal(w.runner.finished, timeout=60_000):
        w.open_action.trigger()
    assert w.loaded is not None and w.model_panel.location.text() == str(tiny_gpt2_dir)
    assert w.run_action.isEnabled() and w.open_action.isEnabled()

    w.generate_panel.controls.max_tokens.setValue(4000)
    w.generate_panel.controls.chat.setChecked(False)
    summaries = []
    w.runner.event.connect(lambda e: isinstance(e, GenerationSummary) and summaries.append(e))
    w.generate_panel.generate_button.click()
    qtbot.waitUntil(lambda: w.generate_panel.output.toPlainText() != "", timeout=10_000)
    busy = [w.run_action, w.open_action]  # export also waits for a selected run
    assert w.cancel_action.isEnabled() and not any(a.isEnabled() for a in busy)
    with qtbot.waitSignal(w.runner.finished, timeout=5000):
        w.cancel_action.trigger()
    assert summaries and summaries[0].stop_reason == "cancelled"
    assert not w.cancel_action.isEnabled() and all(a.isEnabled() for a in busy)
    w.close()


def test_state_survives_a_restart(qtbot, tmp_path, settings):
    first = open_window(qtbot, tmp_path, settings)
    first.resize(1500, 700)
    first.tabs.setCurrentIndex(2)
    first.splitters["results"].setSizes([300, 380])
    sizes = first.splitters["results"].sizes()
    recipe = Recipe((REGISTRY["prune_mlp"](fraction=0.5), REGISTRY["int8_weight_only"]()))
    first.compression_panel.set_recipe(recipe)
    first.compression_panel.set_backend("torch-compile")
    first.close()

    second = open_window(qtbot, tmp_path, settings)
    assert second.compression_panel.recipe() == recipe
    assert second.compression_panel.backend_key() == "torch-compile"
    assert second.tabs.currentIndex() == 2
    # Qt fits a restored window to the screen (the offscreen one is 800 wide,
    # less than the window's minimum width): the height shows it was restored.
    assert second.height() == 700  # the default (nothing kept) is 820
    # The layout may hand the splitter a few pixels more or less: its
    # proportions are what is kept (the default is 420:260, 62% on top).
    share = second.splitters["results"].sizes()
    assert share[0] / sum(share) == pytest.approx(sizes[0] / sum(sizes), abs=0.02)
    assert share[0] / sum(share) < 0.5
    second.close()


@pytest.mark.parametrize(
    "stored",
    [
        '{"format": 1, "passes": [{"pass": "no_such_pass"}]}',
        "not json at all",
        "[1, 2, 3]",
        '{"format": 99, "passes": []}',
    ],
)
def test_a_recipe_that_no_longer_parses_is_dropped_with_a_notice(qtbot, tmp_path, settings, stored):
    settings.setValue("recipe/json", stored)
    settings.setValue("window/tab", "not a number")
    w = open_window(qtbot, tmp_path, settings)
    assert w.compression_panel.recipe() == Recipe()
    assert w.tabs.currentIndex() == 0
    assert any("recipe was not restored" in m for m in w.notifications.messages())
    w.close()


def test_without_settings_nothing_is_kept(qtbot, tmp_path):
    w = open_window(qtbot, tmp_path, None)
    w.tabs.setCurrentIndex(3)
    w.close()
    again = open_window(qtbot, tmp_path, None)
    assert again.tabs.currentIndex() == 0
    again.close()


def test_escape_key_cancels(qtbot, tmp_path, settings, tiny_gpt2_dir):
    w = open_window(qtbot, tmp_path, settings)
    load(qtbot, w, tiny_gpt2_dir)
    w.generate_panel.controls.max_tokens.setValue(4000)
    w.generate_panel.controls.chat.setChecked(False)
    w.generate_panel.generate_button.click()
    qtbot.waitUntil(lambda: w.generate_panel.output.toPlainText() != "", timeout=10_000)
    w.activateWindow()
    with qtbot.waitSignal(w.runner.finished, timeout=5000):
        qtbot.keyClick(w, Qt.Key.Key_Escape)
    w.close()
