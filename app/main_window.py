"""The main window: model panel, generate panel, progress with Cancel, and
notifications. All long work goes through one JobRunner."""

from __future__ import annotations

from PySide6.QtCore import QEventLoop, Qt
from PySide6.QtWidgets import (
    QApplication,
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

from app.compare_view import CompareView
from app.compression_panel import CompressionPanel
from app.demo_panel import DemoPanel
from app.distill_panel import DistillPanel
from app.export_dialog import folder_name
from app.generate_panel import GeneratePanel
from app.live_run_view import LiveRunView
from app.model_panel import ModelPanel
from app.notifications import NotificationArea
from app.pareto_chart import ParetoChart
from app.results_table import ResultsTable
from app.sizes import size_text
from app.worker import JobRunner
from core.demo import PaneEvent
from core.demo_classifier import ClassifierReady
from core.distill.events import DISTILL_EVENTS
from core.evaluate.perplexity import PerplexityPartial
from core.evaluate.sentiment_classifier import TrainStep
from core.evaluate.zero_shot import AccuracyPartial
from core.export.formats import FormatWritten
from core.export.job import ExportResult
from core.jobs import Progress
from core.loading import LoadedModel
from core.measure_classifier import ClassificationTiming
from core.recipe import CompressedModel
from core.results import ResultsStore, RunRecord
from core.runtime.torch_runner import TokenStep

# The demo's compiled decode is compiled for prompt + answer up to this many
# tokens (a longer one compiles again on its first step).
DEMO_TOKENS = 256


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
        # (original, CompressedModel) the demo built last, reused while both still match
        self._demo_model: tuple | None = None

        self.model_panel = ModelPanel()
        self.compression_panel = CompressionPanel()
        self.generate_panel = GeneratePanel()
        self.demo_panel = DemoPanel()
        self.distill_panel = DistillPanel()
        self.live_view = LiveRunView()
        self.bench_chart = self.live_view.latency
        self.perplexity_chart = self.live_view.perplexity
        self.results_table = ResultsTable()
        self.compare_view = CompareView()
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

        self.export_button = QPushButton("Export selected run…")
        self.export_button.setToolTip(
            "Write the selected run as a Hugging Face folder, an ONNX model and/or a report"
        )
        table_box = QWidget()
        table_layout = QVBoxLayout(table_box)
        table_layout.setContentsMargins(0, 0, 0, 0)
        table_layout.addWidget(self.results_table, 1)
        table_layout.addWidget(self.export_button)
        tables = QSplitter(Qt.Orientation.Horizontal)
        tables.addWidget(table_box)
        tables.addWidget(self.compare_view)
        tables.setSizes([620, 300])
        results = QSplitter(Qt.Orientation.Vertical)
        results.addWidget(self.pareto_chart)
        results.addWidget(tables)
        results.setSizes([420, 260])
        self.tabs = QTabWidget()
        self.tabs.addTab(results, "Results and trade-offs")
        self.tabs.addTab(self.live_view, "Live run")
        self.tabs.addTab(self.generate_panel, "Generate")
        self.tabs.addTab(self.demo_panel, "Side by side")
        self.tabs.addTab(self.distill_panel, "Distil")

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
        self.results_table.pair_selected.connect(self.compare_view.show_pair)
        self.demo_panel.demo_requested.connect(self.run_demo)
        self.distill_panel.distill_requested.connect(self.distill_student)
        self.export_button.clicked.connect(self.open_export_dialog)
        self.pareto_chart.record_clicked.connect(self.restore)
        for record in self.store.load():
            self._show_record(record)
        self.model_panel.load_requested.connect(self.load_model)
        self.model_panel.prepare_requested.connect(self.prepare_classifier)
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
            loaded = load_model(source, progress=progress, cancel=cancel)
            # Import what a Run needs now, on this thread: a first import holds
            # the GIL for a long stretch and would freeze the window mid-run.
            import core.evaluate.fidelity  # noqa: F401
            import core.evaluate.perplexity  # noqa: F401
            import core.experiment  # noqa: F401

            return [loaded]

        self._start(f"Loading {source}", job)

    def prepare_classifier(self, fast: bool = False) -> None:
        """Fine-tune and cache the demo classifier (once), then load it."""
        threads = self.threads

        def job(progress, cancel):
            from core.demo_classifier import ClassifierReady, prepare_demo_classifier
            from core.loading import load_model
            from core.runtime.device import set_threads

            set_threads(threads)
            ready = None
            for event in prepare_demo_classifier(fast, progress, cancel):
                ready = event if isinstance(event, ClassifierReady) else ready
                yield event
            yield load_model(ready.source, progress=progress, cancel=cancel)

        if self._start("Preparing the demo classifier", job):
            self.live_view.begin(classifier=True)
            self.tabs.setCurrentWidget(self.live_view)

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
        backend = self.compression_panel.backend_key()

        def job(progress, cancel):
            from core.runtime.device import set_threads

            set_threads(threads)
            return run_experiment(loaded, recipe, settings, progress, cancel, backend)

        if self._refuse_if_busy():
            return
        self.tabs.setCurrentIndex(1)
        self.live_view.begin(loaded.device, loaded.is_classifier)
        # Lay out and paint the Live tab before the model takes the cores:
        # painting five charts for the first time while it ran paused the
        # window 35-55 ms (benchmarks/gui_responsiveness.py).
        QApplication.processEvents(QEventLoop.ProcessEventsFlag.ExcludeUserInputEvents)
        self._start(f"Run: {recipe.name}", job)

    def run_demo(self, prompt: str, max_tokens: int, sampling, chat: bool) -> None:
        """Original and compressed (the panel's recipe) answer ``prompt`` side by side."""
        if self.loaded is None:
            self.notifications.error("Load a model first.")
            return
        recipe = self.compression_panel.recipe()
        if not recipe.passes:
            self.notifications.error(
                "Set a compression in the panel first: the demo compares it with the original."
            )
            return
        from core.experiment import BACKENDS, ExperimentSettings, build_compressed, on_backend

        loaded, threads = self.loaded, self.threads
        settings = self.experiment_settings or ExperimentSettings()
        cached = None
        if self._demo_model and self._demo_model[0] is loaded:
            cached = self._demo_model[1] if self._demo_model[1].recipe == recipe else None

        backend = self.compression_panel.backend_key()  # the compressed pane's runtime

        def job(progress, cancel):
            from core.demo import stream_side_by_side
            from core.runtime.device import set_threads

            set_threads(threads)
            compressed = cached
            if compressed is None:
                compressed = build_compressed(loaded, recipe, settings, progress, cancel)
                yield compressed
            runnable, _ = on_backend(compressed.loaded, backend, DEMO_TOKENS, progress, cancel)
            progress(Progress("Generating side by side", None))
            yield from stream_side_by_side(
                loaded, runnable, prompt, max_tokens, sampling, chat, cancel
            )

        title = recipe.name if backend == "torch" else f"{recipe.name} [{BACKENDS[backend]}]"
        if self._start(f"Demo: {title}", job):
            self.demo_panel.begin(title)
            self.tabs.setCurrentWidget(self.demo_panel)

    def distill_student(self, shape, settings, resume: bool = True, checkpoint_dir=None) -> None:
        """Train a student of ``shape`` from the loaded model, then measure it
        like any configuration (it joins the table and the trade-off chart)."""
        if self.loaded is None:
            self.notifications.error("Load a model first.")
            return
        from dataclasses import replace

        from core.experiment import ExperimentSettings, measure_configuration

        teacher, threads = self.loaded, self.threads
        experiment = self.experiment_settings or ExperimentSettings()
        if experiment.text_source:
            settings = replace(settings, text_source=experiment.text_source)
        recipe = shape.recipe()
        folder = checkpoint_dir or self.store.path.parent / "distill" / folder_name(
            f"{teacher.source}-{recipe.name}"
        )

        def job(progress, cancel):
            from core.distill.events import DistillResult
            from core.distill.student import build_student
            from core.distill.train import distill
            from core.experiment import read_calibration
            from core.runtime.device import set_threads

            set_threads(threads)
            calibration = read_calibration(teacher.tokenizer, experiment, progress)
            student = build_student(teacher, recipe, calibration, progress, cancel)
            result = None
            for event in distill(teacher, student, settings, progress, cancel, folder, resume):
                result = event if isinstance(event, DistillResult) else result
                yield event
            note = f"distilled {result.step} steps ({result.settings}); checkpoint {folder}"
            yield from measure_configuration(
                teacher,
                student.loaded,
                recipe,
                [*student.notes, note],
                experiment,
                progress,
                cancel,
                label=f"{recipe.name} + distilled ({result.step} steps)",
            )

        if self._start(f"Distil: {recipe.name}", job):
            self.distill_panel.begin()
            self.live_view.begin(teacher.device)

    def open_export_dialog(self) -> None:
        from pathlib import Path

        from app.export_dialog import ExportDialog
        from core.export.formats import known_formats

        chosen = self.results_table.selected_records()
        if len(chosen) != 1:
            self.notifications.error("Select one run in the table to export.")
            return
        dialog = ExportDialog(chosen[0].recipe_name, list(known_formats()), Path.home(), self)
        if dialog.exec():
            target, formats, overwrite = dialog.chosen()
            self.export_run(chosen[0], target, formats, overwrite)

    def export_run(self, record: RunRecord, target, formats, overwrite: bool = False) -> None:
        """Rebuild ``record``'s configuration and write it to ``target`` (atomically)."""
        if self.loaded is None or record.model != self.loaded.source:
            self.notifications.error(
                f"Load {record.model} first: an export rebuilds the run from its model."
            )
            return
        if not formats:
            self.notifications.error("Choose at least one export format.")
            return
        from core.experiment import ExperimentSettings
        from core.export.job import run_export
        from core.recipe import Recipe

        loaded, threads = self.loaded, self.threads
        settings = self.experiment_settings or ExperimentSettings()
        recipe = Recipe.from_dict(record.recipe)
        records = [r for r in self.results_table.records if r.model == record.model]

        def job(progress, cancel):
            from core.runtime.device import set_threads

            set_threads(threads)
            return run_export(
                loaded,
                recipe,
                target,
                formats,
                records,
                record.run_id,
                overwrite,
                settings=settings,
                progress=progress,
                cancel=cancel,
            )

        self._start(f"Export: {record.recipe_name}", job)

    def restore(self, record: RunRecord) -> None:
        """Put a run's recipe back into the sliders."""
        from core.recipe import Recipe

        self.compression_panel.set_recipe(Recipe.from_dict(record.recipe))
        self.compression_panel.set_backend(record.backend)
        self.stage.setText(f"Restored: {record.recipe_name}")

    def _show_record(self, record: RunRecord) -> None:
        self.results_table.add(record)
        self.pareto_chart.add(record)

    def _refuse_if_busy(self) -> bool:
        if self.runner.busy:
            self.notifications.error(f"{self.runner.job_name} is still running; cancel it first.")
        return self.runner.busy

    def _start(self, name: str, job) -> bool:
        self._outcome = None
        if self._refuse_if_busy() or not self.runner.start(name, job):
            return False
        self.stage.setText(name)
        return True

    # --- job signals (GUI thread) ---------------------------------------------
    def _on_event(self, event) -> None:
        if isinstance(event, LoadedModel):
            self.loaded = event
            self.model_panel.show_description(event.description)
            self.compression_panel.set_model(event.model)
            self.pareto_chart.show_model(event.source, event.is_classifier)
            self.notifications.notice(f"Loaded {event.source} ({event.description.architecture})")
        elif isinstance(event, TokenStep):
            self.live_view.add_step(event.index, event.step_s)
        elif isinstance(event, PerplexityPartial):
            self.live_view.add_perplexity(event.windows_done, event.ppl, event.ci95_halfwidth)
        elif isinstance(event, CompressedModel):
            self._demo_model = (self.loaded, event)
            for note in event.notes:
                self.notifications.notice(note)
        elif isinstance(event, PaneEvent):
            self.demo_panel.on_event(event)
        elif isinstance(event, ClassificationTiming):
            self.live_view.add_classification(event.ms)
        elif isinstance(event, AccuracyPartial):
            self.live_view.add_accuracy(event.done, event.accuracy)
        elif isinstance(event, TrainStep):
            self.stage.setText(
                f"Fine-tuning: step {event.step}/{event.steps_total}, loss {event.loss:.3f}"
            )
        elif isinstance(event, ClassifierReady):
            how = "found in the cache" if event.reused else "fine-tuned and cached"
            self.notifications.notice(
                f"Demo classifier {how}: {event.result.accuracy:.1%} test accuracy"
            )
        elif isinstance(event, DISTILL_EVENTS):
            self.distill_panel.on_event(event)
        elif isinstance(event, FormatWritten):
            self.notifications.notice(f"Export {event.format}: {event.summary}")
        elif isinstance(event, ExportResult):
            self.notifications.notice(
                f"Exported {', '.join(event.formats)} to {event.folder} "
                f"({size_text(event.bytes_written)})"
            )
        elif isinstance(event, RunRecord):
            record = self.store.append(event)
            self._show_record(record)  # the Results tab shows it; no tab switch mid-work
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
        self.live_view.end()
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
        self.demo_panel.set_ready(not busy and self.loaded is not None)
        self.export_button.setEnabled(not busy)
        self.distill_panel.set_ready(not busy and self.loaded is not None)

    def closeEvent(self, event) -> None:  # noqa: N802 (Qt's name)
        self.runner.shutdown()
        super().closeEvent(event)
