"""The window, driven as a user would, offscreen."""

import pytest

from app.main_window import MainWindow
from core.runtime.generation import GenerationSummary


@pytest.fixture
def window(qtbot):
    w = MainWindow(threads=1)
    qtbot.addWidget(w)
    w.show()
    yield w
    w.close()
    # A job thread left running after close would outlive the test.
    assert not w.runner.busy


def load(qtbot, window, folder):
    window.model_panel.source_kind.setCurrentIndex(1)  # local folder
    window.model_panel.location.setText(str(folder))
    with qtbot.waitSignal(window.runner.finished, timeout=60_000):
        qtbot.mouseClick(window.model_panel.load_button, qtbot_button())


def qtbot_button():
    from PySide6.QtCore import Qt

    return Qt.MouseButton.LeftButton


def test_load_then_generate_streams_text(qtbot, window, tiny_llama_dir):
    load(qtbot, window, tiny_llama_dir)
    assert window.loaded is not None
    assert window.model_panel.fields["architecture"].text().startswith("LlamaForCausalLM")
    source = window.model_panel.fields["source"]  # elided, whole in its tooltip
    assert source.toolTip() == str(tiny_llama_dir) and source.text().endswith(tiny_llama_dir.name)
    assert window.model_panel.title() == "Model"  # a long path there clipped the column
    assert window.generate_panel.generate_button.isEnabled()

    received = []
    window.runner.event.connect(received.append)
    window.tabs.setCurrentWidget(window.generate_panel)  # as a user does to press Generate
    window.generate_panel.controls.prompt.setPlainText("while True:")
    window.generate_panel.controls.chat.setChecked(False)
    window.generate_panel.controls.max_tokens.setValue(20)
    with qtbot.waitSignal(window.runner.finished, timeout=60_000):
        qtbot.mouseClick(window.generate_panel.generate_button, qtbot_button())

    summary = received[-1]
    assert isinstance(summary, GenerationSummary) and summary.new_tokens == 20
    assert window.generate_panel.output.toPlainText() == summary.text
    assert "tokens/s" in window.generate_panel.speed.text()
    assert "one run, torch-eager on cpu, 1 threads" in (
        window.generate_panel.speed.text()
    )  # the window says what the CLI says: one run, on which runner and threads
    qtbot.waitUntil(lambda: window.generate_panel.chart.points_drawn() == 20, timeout=3000)


def test_bad_folder_shows_error_and_app_stays_usable(qtbot, window, tmp_path, tiny_gpt2_dir):
    load(qtbot, window, tmp_path / "does-not-exist")
    assert window.loaded is None
    assert any("No such folder" in m for m in window.notifications.messages())
    assert window.model_panel.load_button.isEnabled()
    load(qtbot, window, tiny_gpt2_dir)
    assert window.loaded is not None
    assert window.model_panel.fields["architecture"].text().startswith("GPT2LMHeadModel")


def test_cancel_stops_generation(qtbot, window, tiny_gpt2_dir):
    load(qtbot, window, tiny_gpt2_dir)
    window.generate_panel.controls.max_tokens.setValue(4000)
    window.generate_panel.controls.chat.setChecked(False)
    summaries = []
    window.runner.event.connect(
        lambda e: summaries.append(e) if isinstance(e, GenerationSummary) else None
    )
    qtbot.mouseClick(window.generate_panel.generate_button, qtbot_button())
    qtbot.waitUntil(lambda: window.generate_panel.output.toPlainText() != "", timeout=10_000)
    with qtbot.waitSignal(window.runner.finished, timeout=1000):
        qtbot.mouseClick(window.cancel_button, qtbot_button())
    assert summaries and summaries[0].stop_reason == "cancelled"
    assert summaries[0].new_tokens < 4000


def test_generate_without_model_says_so(qtbot, window, tiny_llama_dir):
    window.generate(prompt="hi", max_tokens=4, sampling=None, chat=False)
    assert any("Load a model first" in m for m in window.notifications.messages())
    # every greyed start button says why before a model is loaded (sweep 14)
    for panel in (window.generate_panel, window.distill_panel, window.search_panel):
        assert not panel.gate.button.isEnabled()
        assert panel.gate.button.toolTip() == panel.gate.label.text() == "Load a model first."
    load(qtbot, window, tiny_llama_dir)
    assert window.search_panel.status.text().startswith("Set the limits")
    assert window.generate_panel.generate_button.toolTip() == ""


def test_the_window_fits_its_default_size_on_a_laptop_screen(qtbot, window):
    """Every tab's controls fit the default 1280 px (a 1366 px laptop screen):
    the Generate tab's controls on one row made the window 1575 px at least."""
    from app.window_state import DEFAULT_SIZE

    assert window.minimumSizeHint().width() <= DEFAULT_SIZE[0]


def test_a_pane_left_waiting_says_how_its_job_ended(qtbot):
    """It kept "waiting for the first token" after a failure (sweep ten)."""
    from app.stream_view import StreamView
    from core.runtime.generation import TextToken

    view = StreamView()
    qtbot.addWidget(view)
    view.end("Generate failed")  # never begun: nothing to say
    assert view.speed.text() == "tokens/s: –"
    view.begin()
    view.end("Generate failed")
    assert view.speed.text().startswith("Generate failed before the first token")
    view.begin()
    view.on_event(TextToken(index=0, token_id=1, text="a", elapsed_s=0.01, step_s=0.01))
    view.end("Generate: cancelled")
    assert view.speed.text().startswith("Generate: cancelled after 1 token;")
