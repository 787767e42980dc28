"""The Serve tab: start serving the loaded model from the window, see the
URL and the token, answer a real request, watch the figures, stop."""

from __future__ import annotations

import httpx
import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QLineEdit


@pytest.fixture
def config_dir(tmp_path, monkeypatch):
    folder = tmp_path / "config"
    monkeypatch.setenv("WORKBENCH_CONFIG_DIR", str(folder))
    return folder


def test_serve_panel_starts_shows_url_and_token_and_stops(qtbot, window, config_dir):
    panel = window.serve_panel
    window.tabs.setCurrentWidget(panel)
    panel.port.setValue(0)  # any free port
    assert panel.start_button.isEnabled() and not panel.stop_button.isEnabled()
    qtbot.mouseClick(panel.start_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: panel.url.text().startswith("http://127.0.0.1:"), timeout=60_000)
    assert panel.url.text().endswith("/v1")  # the base URL an OpenAI client takes
    url = panel.url.text().removesuffix("/v1")
    token = (config_dir / "serve-token").read_text().strip()
    assert panel.token.text() == token
    assert panel.token.echoMode() == QLineEdit.EchoMode.Password
    panel.copy_button.click()
    assert QGuiApplication.clipboard().text() == token
    assert window.runner.busy and not panel.start_button.isEnabled()
    assert panel.stop_button.isEnabled()
    assert not window.compression_panel.run_button.isEnabled()  # the worker is taken

    body = {"prompt": "Hello", "max_tokens": 4, "temperature": 0}
    headers = {"Authorization": f"Bearer {token}"}
    answer = httpx.post(f"{url}/v1/completions", json=body, headers=headers, timeout=30)
    assert answer.status_code == 200
    qtbot.waitUntil(lambda: panel.totals.text().startswith("1 request,"), timeout=10_000)
    assert panel.requests_chart.series.size > 0 and panel.tokens_chart.series.size > 0
    assert max(panel.requests_chart.series.y) > 0 and max(panel.tokens_chart.series.y) > 0

    with qtbot.waitSignal(window.runner.finished, timeout=30_000):
        qtbot.mouseClick(panel.stop_button, Qt.MouseButton.LeftButton)
    assert panel.status.text().startswith("Stopped") and "1 request," in panel.status.text()
    assert panel.start_button.isEnabled() and not panel.stop_button.isEnabled()
    assert "Serving: the server stopped" in window.notifications.messages()  # not "cancelled"
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/healthz", timeout=5)


def test_serving_a_run_needs_one_selected(qtbot, window, config_dir):
    panel = window.serve_panel
    panel.what.setCurrentIndex(1)
    panel.start_button.click()
    assert not window.runner.busy
    assert window.notifications.messages()[0] == "Error: Select one run in the table to serve."


def test_serving_with_prompt_lookup_from_the_panel(qtbot, window, config_dir):
    panel = window.serve_panel
    panel.port.setValue(0)
    assert panel.lookup.value() == 0 and panel.lookup.text() == "off"
    panel.lookup.setValue(5)
    qtbot.mouseClick(panel.start_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: panel.url.text().startswith("http://127.0.0.1:"), timeout=60_000)
    assert "Greedy requests draft up to 5 tokens" in panel.status.text()
    url = panel.url.text().removesuffix("/v1")
    token = (config_dir / "serve-token").read_text().strip()
    body = {"prompt": "a b c a b c a b", "max_tokens": 6, "temperature": 0}
    headers = {"Authorization": f"Bearer {token}"}
    answer = httpx.post(f"{url}/v1/completions", json=body, headers=headers, timeout=30)
    assert answer.status_code == 200
    metrics = httpx.get(f"{url}/metrics", timeout=10).text
    assert "workbench_serve_prompt_lookup_drafted_tokens_total" in metrics
    with qtbot.waitSignal(window.runner.finished, timeout=30_000):
        qtbot.mouseClick(panel.stop_button, Qt.MouseButton.LeftButton)
