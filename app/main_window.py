"""The main window: model panel, generate panel, progress with Cancel, and
notifications. All long work goes through one JobRunner."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QMainWindow,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSplitter,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from app.compression_panel import CompressionPanel
from app.generate_panel import GeneratePanel
from app.latency_chart import LatencyChart
from app.model_panel import ModelPanel
from app.notifications import NotificationArea
from app.pareto_chart import ParetoChart
from app.perplexity_chart import PerplexityChart
from app.results_table import ResultsTable
from app.worker import JobRunner
from core.jobs import Progress
from core.loading import LoadedModel
from core.results import ResultsStore, RunRecord


class MainWindow(QMainWindow):
    def __init__(
        self,
        threads: int | None = None,
        store: ResultsStore | None = None,
        experiment_settings=None,
        parent=None,
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle("Compression Workbench")
        self.threads = threads
        self.store = store or ResultsStore()
        self.experiment_settings = experiment_settings
        self.loaded: LoadedModel | None = None
        self.runner = JobRunner(self)
        self._outcome: str | None = None  # set when the running job failed or was cancelled
        self._bench_tokens = 0

        self.model_panel = ModelPanel()
        self.compression_panel = CompressionPanel()
        self.generate_panel = GeneratePanel()
        self.bench_chart = LatencyChart()
        self.bench_chart.setTitle("Benchmark: per-token step time, all runs", size="9pt")
        self.perplexity_chart = PerplexityChart()
        self.results_table = ResultsTable()
        self.pareto_chart = ParetoChart()
        self.notifications = NotificationArea()
        self.stage = QLabel("Ready")
        self.progress_bar = QProgressBar()
        self.progress_bar.setMaximumWidth(240)
        self.progress_bar.setVisible(False)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)

        left = QWidget()
        left_layout = QVBoxLayout(left)
        left_layout.addWidget(self.model_panel)
        left_layout.addWidget(self.compression_panel)
        left_layout.addStretch(1)
        scroll = QScrollArea()
        scroll.setWidget(left)
        scroll.setWidgetResizable(True)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        scroll.setFixedWidth(420)

        live = QSplitter(Qt.Orientation.Vertical)
        live.addWidget(self.bench_chart)
        live.addWidget(self.perplexity_chart)
        results = QSplitter(Qt.Orientation.Vertical)
        results.addWidget(self.pareto_chart)
        results.addWidget(self.results_table)
        results.setSizes([420, 260])
        self.tabs = QTabWidget()
        self.tabs.addTab(results, "Results and trade-offs")
        self.tabs.addTab(live, "Live run")
        self.tabs.addTab(self.generate_panel, "Generate")

        top = QHBoxLayout()
        top.addWidget(scroll)
        top.addWidget(self.tabs, 1)
        central = QWidget()
        layout = QVBoxLayout(central)
        layout.addLayout(top, 1)
        layout.addWidget(self.notifications)
        self.setCentralWidget(central)
        status = self.statusBar()
        status.addWidget(self.stage, 1)
        status.addPermanentWidget(self.progress_bar)
        status.addPermanentWidget(self.cancel_button)

        self.compression_panel.run_requested.connect(self.run_configuration)
        self.results_table.record_selected.connect(self.restore)
        self.pareto_chart.record_clicked.connect(self.restore)
        for record in self.store.load():
            self._show_record(record)
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

    def run_configuration(self, recipe) -> None:
        if self.loaded is None:
            self.notifications.error("Load a model first.")
            return
        from core.experiment import ExperimentSettings, run_experiment

        loaded, threads = self.loaded, self.threads
        settings = self.experiment_settings or ExperimentSettings()

        def job(progress, cancel):
            from core.runtime.device import set_threads

            set_threads(threads)
            return run_experiment(loaded, recipe, settings, progress, cancel)

        self.bench_chart.clear_points()
        self.perplexity_chart.clear_points()
        self._bench_tokens = 0
        self.tabs.setCurrentIndex(1)
        self._start(f"Run: {recipe.name}", job)

    def restore(self, record: RunRecord) -> None:
        """Put a run's recipe back into the sliders."""
        from core.recipe import Recipe

        self.compression_panel.set_recipe(Recipe.from_dict(record.recipe))
        self.stage.setText(f"Restored: {record.recipe_name}")

    def _show_record(self, record: RunRecord) -> None:
        self.results_table.add(record)
        self.pareto_chart.add(record)

    def _start(self, name: str, job) -> None:
        self._outcome = None
        if not self.runner.start(name, job):
            self.notifications.error(f"{self.runner.job_name} is still running; cancel it first.")
            return
        self.stage.setText(name)

    # --- job signals (GUI thread) ---------------------------------------------
    def _on_event(self, event) -> None:
        from core.evaluate.perplexity import PerplexityPartial
        from core.runtime.torch_runner import TokenStep

        if isinstance(event, LoadedModel):
            self.loaded = event
            self.model_panel.show_description(event.description)
            self.compression_panel.set_model(event.model)
            self.notifications.notice(f"Loaded {event.source} ({event.description.architecture})")
        elif isinstance(event, TokenStep):
            self.bench_chart.add_point(self._bench_tokens, event.step_s * 1e3)
            self._bench_tokens += 1
        elif isinstance(event, PerplexityPartial):
            self.perplexity_chart.add_point(event.windows_done, event.ppl, event.ci95_halfwidth)
        elif isinstance(event, RunRecord):
            record = self.store.append(event)
            self._show_record(record)
            self.tabs.setCurrentIndex(0)
            for note in record.notes:
                self.notifications.notice(note)
            self.notifications.notice(f"Measured: {record.recipe_name}")
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
        self.compression_panel.run_button.setEnabled(not busy and self.loaded is not None)
        self.generate_panel.set_ready(not busy and self.loaded is not None)

    def closeEvent(self, event) -> None:  # noqa: N802 (Qt's name)
        self.runner.shutdown()
        super().closeEvent(event)
