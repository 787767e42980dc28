"""The main window: model panel, generate panel, progress with Cancel, and
notifications. All long work goes through one JobRunner."""

from __future__ import annotations

from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QMainWindow,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from app.generate_panel import GeneratePanel
from app.model_panel import ModelPanel
from app.notifications import NotificationArea
from app.worker import JobRunner
from core.jobs import Progress
from core.loading import LoadedModel


class MainWindow(QMainWindow):
    def __init__(self, threads: int | None = None, parent=None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Compression Workbench")
        self.threads = threads
        self.loaded: LoadedModel | None = None
        self.runner = JobRunner(self)
        self._outcome: str | None = None  # set when the running job failed or was cancelled

        self.model_panel = ModelPanel()
        self.model_panel.setFixedWidth(360)
        self.generate_panel = GeneratePanel()
        self.notifications = NotificationArea()
        self.stage = QLabel("Ready")
        self.progress_bar = QProgressBar()
        self.progress_bar.setMaximumWidth(240)
        self.progress_bar.setVisible(False)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)

        top = QHBoxLayout()
        top.addWidget(self.model_panel)
        top.addWidget(self.generate_panel, 1)
        central = QWidget()
        layout = QVBoxLayout(central)
        layout.addLayout(top, 1)
        layout.addWidget(self.notifications)
        self.setCentralWidget(central)
        status = self.statusBar()
        status.addWidget(self.stage, 1)
        status.addPermanentWidget(self.progress_bar)
        status.addPermanentWidget(self.cancel_button)

        self.model_panel.load_requested.connect(self.load_model)
        self.generate_panel.generate_requested.connect(self.generate)
        self.cancel_button.clicked.connect(self.runner.cancel)
        self.runner.progress.connect(self._on_progress)
        self.runner.event.connect(self._on_event)
        self.runner.failed.connect(self._on_failed)
        self.runner.cancelled.connect(self._on_cancelled)
        self.runner.finished.connect(self._on_finished)
        self.runner.busy_changed.connect(self._on_busy)
        self._on_busy(False)

    # --- actions ------------------------------------------------------------
    def load_model(self, source: str) -> None:
        if not source:
            self.notifications.error("Give a folder path or a Hugging Face id to load.")
            return
        threads = self.threads

        def job(progress, cancel):
            from core.loading import load_model
            from core.runtime.device import set_threads

            set_threads(threads)
            return [load_model(source, progress=progress, cancel=cancel)]

        self._start(f"Loading {source}", job)

    def generate(self, prompt: str, max_tokens: int, sampling, chat: bool) -> None:
        if self.loaded is None:
            self.notifications.error("Load a model first.")
            return
        loaded, threads = self.loaded, self.threads

        def job(progress, cancel):
            from core.generation import stream_generation
            from core.runtime.device import set_threads

            set_threads(threads)
            progress(Progress("Generating", None))
            return stream_generation(loaded, prompt, max_tokens, sampling, chat, cancel)

        self.generate_panel.begin()
        self._start("Generating", job)

    def _start(self, name: str, job) -> None:
        self._outcome = None
        if not self.runner.start(name, job):
            self.notifications.error(f"{self.runner.job_name} is still running; cancel it first.")
            return
        self.stage.setText(name)

    # --- job signals (GUI thread) ---------------------------------------------
    def _on_event(self, event) -> None:
        if isinstance(event, LoadedModel):
            self.loaded = event
            self.model_panel.show_description(event.description)
            self.notifications.notice(f"Loaded {event.source} ({event.description.architecture})")
        else:
            self.generate_panel.on_event(event)

    def _on_progress(self, progress: Progress) -> None:
        self.stage.setText(progress.stage)
        if progress.fraction is None:
            self.progress_bar.setRange(0, 0)  # busy indicator: no fraction known
        else:
            self.progress_bar.setRange(0, 100)
            self.progress_bar.setValue(round(progress.fraction * 100))

    def _on_failed(self, name: str, message: str) -> None:
        self.notifications.error(message)
        self._outcome = f"{name} failed"

    def _on_cancelled(self, name: str) -> None:
        self.notifications.notice(f"{name}: cancelled")
        self._outcome = f"{name}: cancelled"

    def _on_finished(self, name: str) -> None:
        self.stage.setText(self._outcome or f"Ready ({name}: done)")
        self._outcome = None

    def _on_busy(self, busy: bool) -> None:
        self.progress_bar.setVisible(busy)
        if busy:
            self.progress_bar.setRange(0, 0)
        self.cancel_button.setEnabled(busy)
        self.model_panel.set_busy(busy)
        self.generate_panel.set_ready(not busy and self.loaded is not None)

    def closeEvent(self, event) -> None:  # noqa: N802 (Qt's name)
        self.runner.shutdown()
        super().closeEvent(event)
