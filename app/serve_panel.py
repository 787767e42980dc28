"""Serve the loaded model (or the selected run, as it was measured) over an
OpenAI-compatible HTTP API: the URL, the token with a Copy button, and live
requests/s and tokens/s.

Serving is a job like any other, so it holds the window's one worker while
it runs: other work (Run, Generate, Export) waits until Stop (the window's
Cancel does the same), and the panel says so.
"""

from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
)

from app.model_gate import ModelGate
from app.series_chart import SeriesChart
from core.message_text import counted
from core.runtime.prompt_lookup import MAX_DRAFT_TOKENS
from core.serve.events import ServerStarted, ServerStats, ServerStopped

LOADED_MODEL, SELECTED_RUN = "The loaded model", "The run selected in the results table"
BUSY_NOTE = "Serving holds the window's worker: other work waits until you stop it."


class ServePanel(QGroupBox):
    # serve the selected run (else the model), host, port, prompt lookup draft tokens (0: off)
    serve_requested = Signal(bool, str, int, int)
    stop_requested = Signal()

    def __init__(self, parent=None) -> None:
        super().__init__("Serve over HTTP (OpenAI-compatible)", parent)
        self.what = QComboBox()
        self.what.addItems([LOADED_MODEL, SELECTED_RUN])
        self.host = QLineEdit("127.0.0.1")
        self.host.setToolTip("127.0.0.1: this machine only. 0.0.0.0: every interface (no TLS).")
        self.port = QSpinBox()
        self.port.setRange(0, 65535)
        self.port.setValue(8000)
        self.port.setSpecialValueText("any free port")
        self.lookup = QSpinBox()
        self.lookup.setRange(0, MAX_DRAFT_TOKENS)
        self.lookup.setValue(0)
        self.lookup.setSpecialValueText("off")
        self.lookup.setSuffix(" draft tokens")
        self.lookup.setToolTip(
            "Greedy requests (temperature 0) draft up to this many tokens copied from their own "
            "text, each draft checked in one model step: the same answer in fewer steps when "
            "it repeats the prompt. Sampled requests decode as before."
        )
        self.start_button = QPushButton("Start serving")
        self.stop_button = QPushButton("Stop")
        self.stop_button.setEnabled(False)
        self.url = QLineEdit()
        self.url.setReadOnly(True)
        self.model_id = QLineEdit()
        self.model_id.setReadOnly(True)
        self.token = QLineEdit()
        self.token.setReadOnly(True)
        self.token.setEchoMode(QLineEdit.EchoMode.Password)
        self.show_token = QCheckBox("Show")
        self.copy_button = QPushButton("Copy token")
        self.copy_button.setEnabled(False)
        self.status = QLabel(f"Not serving. {BUSY_NOTE}")
        self.status.setWordWrap(True)
        self.gate = ModelGate(self.start_button, self.status)
        self.totals = QLabel("")
        self.requests_chart = SeriesChart("Requests answered per second", "seconds", "requests/s")
        self.tokens_chart = SeriesChart(
            "Tokens generated per second", "seconds", "tokens/s", color="#2ca02c"
        )

        form = QFormLayout()
        form.addRow("Serve", self.what)
        address = QHBoxLayout()
        address.addWidget(self.host, 1)
        address.addWidget(QLabel("port"))
        address.addWidget(self.port)
        form.addRow("Listen on", address)
        form.addRow("Prompt lookup", self.lookup)
        buttons = QHBoxLayout()
        buttons.addWidget(self.start_button)
        buttons.addWidget(self.stop_button)
        buttons.addStretch(1)
        form.addRow("", buttons)
        form.addRow("Base URL (OpenAI)", self.url)
        form.addRow("Model name", self.model_id)
        token_row = QHBoxLayout()
        token_row.addWidget(self.token, 1)
        token_row.addWidget(self.show_token)
        token_row.addWidget(self.copy_button)
        form.addRow("Bearer token", token_row)
        charts = QHBoxLayout()
        charts.addWidget(self.requests_chart)
        charts.addWidget(self.tokens_chart)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.status)
        layout.addWidget(self.totals)
        layout.addLayout(charts, 1)

        self.start_button.clicked.connect(self._request)
        self.stop_button.clicked.connect(self.stop_requested)
        self.copy_button.clicked.connect(self.copy_token)
        self.show_token.toggled.connect(
            lambda shown: self.token.setEchoMode(
                QLineEdit.EchoMode.Normal if shown else QLineEdit.EchoMode.Password
            )
        )
        self._serving = False

    def _request(self) -> None:
        use_run = self.what.currentText() == SELECTED_RUN
        self.serve_requested.emit(
            use_run, self.host.text().strip(), self.port.value(), self.lookup.value()
        )

    def copy_token(self) -> None:
        QGuiApplication.clipboard().setText(self.token.text())

    def set_ready(self, ready: bool) -> None:
        """Start is possible (a model is loaded, the worker is free); a job
        that ended (this one too) leaves the panel not serving."""
        self.gate.set_ready(ready)
        if ready and self._serving:
            self._serving = False
            self.stop_button.setEnabled(False)
            if not self.status.text().startswith("Stopped"):
                self.status.setText(f"Not serving. {BUSY_NOTE}")

    def clear(self) -> None:
        """Another model is loaded: the last server's address, token and
        figures go (its status line is the model gate's)."""
        for field in (self.url, self.model_id, self.token):
            field.clear()
        self.copy_button.setEnabled(False)
        self.totals.clear()
        self.requests_chart.clear_points()
        self.tokens_chart.clear_points()

    def begin(self) -> None:
        self._serving = True
        self.stop_button.setEnabled(True)
        self.status.setText(f"Starting the server… {BUSY_NOTE}")
        self.url.clear()
        self.totals.clear()
        self.requests_chart.clear_points()
        self.tokens_chart.clear_points()

    def on_event(self, event) -> None:
        if isinstance(event, ServerStarted):
            self.url.setText(f"{event.url}/v1")  # what an OpenAI client takes, as the status says
            self.model_id.setText(event.model_id)
            self.token.setText(event.token)
            self.copy_button.setEnabled(True)
            self.status.setText(
                f"Serving at {event.url}/v1 (token kept in {event.token_file})."
                f"{_drafting(event.prompt_lookup)} {BUSY_NOTE}"
            )
        elif isinstance(event, ServerStats):
            self.requests_chart.add_point(event.elapsed_s, event.requests_per_s)
            self.tokens_chart.add_point(event.elapsed_s, event.tokens_per_s)
            self.totals.setText(
                f"{counted(event.requests, 'request')}, "
                f"{counted(event.generated_tokens, 'token')} generated, "
                f"{event.queue_depth} waiting; {event.client_errors} refused (4xx), "
                f"{event.server_errors} server errors"
            )
        elif isinstance(event, ServerStopped):
            self.status.setText(
                f"Stopped after {event.seconds:.0f} s: {counted(event.requests, 'request')}, "
                f"{counted(event.generated_tokens, 'token')}, "
                f"{counted(event.server_errors, 'server error')}."
            )


def _drafting(lookup: dict | None) -> str:
    """The status line's words for the server's prompt lookup (none when off)."""
    if not lookup:
        return ""
    note = f" ({lookup['note']})" if "note" in lookup else ""
    return f" Greedy requests draft up to {lookup['draft_tokens']} tokens from their text{note}."
