"""The main window: model panel, generate panel, progress with Cancel, and
notifications. All long work goes through one JobRunner."""

from __future__ import annotations

import os

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

from app import gui_gc
from app.compare_view import CompareView
from app.compression_panel import CompressionPanel
from app.demo_panel import DemoPanel
from app.distill_panel import DistillPanel
from app.event_router import EventRouter
from app.generate_panel import GeneratePanel
from app.live_run_view import LiveRunView
from app.model_panel import ModelPanel
from app.notifications import NotificationArea
from app.pareto_chart import ParetoChart
from app.results_table import ResultsTable
from app.search_panel import SearchPanel
from app.sensitivity_panel import SensitivityPanel, sensitivity_store
from app.serve_panel import ServePanel
from app.sizes import size_text
from app.worker import JobRunner
from core.distill.events import DISTILL_EVENTS
from core.evaluate.perplexity import PerplexityPartial
from core.evaluate.sentiment_classifier import TrainStep
from core.evaluate.zero_shot import AccuracyPartial
from core.export.formats import FormatWritten
from core.jobs.prepare_classifier import ClassifierReady
from core.jobs.write_export import ExportResult
from core.measure.classifier_speed import ClassificationTiming
from core.message_text import first_line
from core.models.loading import LoadedModel
from core.passes.recipe import CompressedModel, Recipe
from core.progress import Progress
from core.results.store import ResultsStore, RunRecord, identified
from core.runtime.side_by_side import PaneEvent
from core.runtime.torch_runner import TokenStep
from core.search.events import SEARCH_EVENTS
from core.serve.events import SERVE_EVENTS


class MainWindow(QMainWindow):
    def __init__(
        self,
        threads: int | None = None,
        store: ResultsStore | None = None,
        experiment_settings=None,
        parent=None,
        settings=None,
    ) -> None:
        super().__init__(parent)
        gui_gc.hold(self)  # released in closeEvent
        self.setWindowTitle("Compression Workbench")
        self.threads = threads
        self.store = store or ResultsStore()
        self.experiment_settings = experiment_settings
        self.loaded: LoadedModel | None = None
        self.runner = JobRunner(self)
        self._outcome: str | None = None  # set when the running job failed or was cancelled
        self._closing = False  # closed mid-job: closes when the cancelled job stops
        self._noted: set[str] = set()  # the running job's notes already shown
        self._quit_now = lambda: os._exit(0)  # a second close mid-job (tests replace it)
        # (original, CompressedModel) the demo built last, reused while both still match
        self._demo_model: tuple | None = None

        self.model_panel = ModelPanel()
        self.compression_panel = CompressionPanel()
        self.generate_panel = GeneratePanel()
        self.demo_panel = DemoPanel()
        self.distill_panel = DistillPanel()
        self.sensitivity_panel = SensitivityPanel(sensitivity_store(self.store))
        self.serve_panel = ServePanel()
        self.search_panel = SearchPanel()
        self.live_view = LiveRunView()
        self.bench_chart = self.live_view.latency
        self.perplexity_chart = self.live_view.perplexity
        self.results_table = ResultsTable()
        self.compare_view = CompareView()
        self.pareto_chart = ParetoChart()
        self.notifications = NotificationArea()
        self.stage = QLabel("Ready")
        self.stage.setTextFormat(Qt.TextFormat.PlainText)  # it shows names from runs.jsonl
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
        # Wide enough for the column's widest row (a slider row, the file
        # field and its button): narrower, the right edge was cut off.
        needed = (
            left.minimumSizeHint().width()
            + scroll.verticalScrollBar().sizeHint().width()
            + 2 * scroll.frameWidth()
        )
        width = max(420, needed, self.compression_panel.footer.minimumSizeHint().width())
        scroll.setFixedWidth(width)
        left_column = QWidget()
        left_column.setFixedWidth(width)
        column = QVBoxLayout(left_column)
        column.setContentsMargins(0, 0, 0, 0)
        column.addWidget(scroll, 1)
        column.addWidget(self.compression_panel.footer)  # Run stays in view

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
        live = self.live_view
        self.splitters = {"results": results, "tables": tables, "live": live}
        self.splitters.update(live_top=live.top_row, live_bottom=live.bottom_row)
        self.tabs = QTabWidget()
        self.tabs.addTab(results, "Results and trade-offs")
        self.tabs.addTab(self.live_view, "Live run")
        self.tabs.addTab(self.generate_panel, "Generate")
        self.tabs.addTab(self.demo_panel, "Side by side")
        self.tabs.addTab(self.distill_panel, "Distil")
        self.tabs.addTab(self.sensitivity_panel, "Sensitivity")
        self.tabs.addTab(self.serve_panel, "Serve")
        self.tabs.addTab(self.search_panel, "Search")

        top = QHBoxLayout()
        top.addWidget(left_column)
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
        self.serve_panel.serve_requested.connect(self.serve)
        self.serve_panel.stop_requested.connect(self.runner.cancel)
        self.search_panel.search_requested.connect(self.run_search)
        self.search_panel.cancel_requested.connect(self.runner.cancel)
        self.export_button.clicked.connect(self.open_export_dialog)
        self.results_table.itemSelectionChanged.connect(lambda: self._export_follows())
        self.pareto_chart.record_clicked.connect(self.restore)
        try:
            stored = self.store.load()
        except OSError as err:  # a folder or a FIFO in its place, no permission
            stored = []
            self.notifications.error(
                f"The stored runs cannot be read ({first_line(err)}); none are shown, and runs "
                "measured now cannot be stored until it is fixed."
            )
        self.results_table.add_many(stored)  # each view drawn once, not once per run
        self.pareto_chart.add_many(stored)
        if self.store.skipped:
            self.notifications.error(
                f"{self.store.skipped} line(s) of {self.store.path} could not be read "
                "(damaged, or values of the wrong type) and are not shown; the file is unchanged."
            )
        self.model_panel.load_requested.connect(self.load_model)
        self.model_panel.prepare_requested.connect(self.prepare_classifier)
        self.generate_panel.generate_requested.connect(self.generate)
        self.cancel_button.clicked.connect(self.runner.cancel)
        self.runner.progress.connect(self._on_progress)
        self.router = EventRouter(on_error=self._on_display_error)
        self._subscribe_panels()
        self.sensitivity_panel.connect_window(self)  # its job, events and cell clicks
        self.runner.event.connect(self._on_event)
        self.runner.failed.connect(self._on_failed)
        self.runner.cancelled.connect(self._on_cancelled)
        self.runner.finished.connect(self._on_finished)
        self.runner.busy_changed.connect(self._on_busy)
        self._on_busy(False)
        self._build_menu()
        self.settings = settings  # QSettings; None (tests, scripts): nothing kept
        self._restore_state()

    # --- actions: each builds a job request and starts the job ---------------
    def load_model(self, source: str) -> None:
        if not source:
            self.notifications.error("Give a folder path or a Hugging Face id to load.")
            self.stage.setText("Ready (nothing to load)")
            return
        from core.jobs.load import LoadRequest, load

        self._start_job(
            f"Loading {source}", load, LoadRequest(source, threads=self.threads, preimport=True)
        )

    def prepare_classifier(self, fast: bool = False) -> None:
        """Fine-tune and cache the demo classifier (once), then load it."""
        from core.jobs.prepare_classifier import PrepareClassifierRequest, prepare_classifier

        request = PrepareClassifierRequest(fast, threads=self.threads)
        if self._start_job("Preparing the demo classifier", prepare_classifier, request):
            self.live_view.begin(classifier=True)
            self.tabs.setCurrentWidget(self.live_view)

    def generate(
        self,
        prompt: str,
        max_tokens: int,
        sampling=None,
        chat: bool = False,
        beams=None,
        lookup=None,
    ) -> None:
        """Stream an answer; ``sampling`` None: greedy (as the job's default)."""
        if self.loaded is None:
            self.notifications.error("Load a model first.")
            return
        from core.jobs.generate import GenerateRequest, generate
        from core.runtime.sampling import GREEDY

        request = GenerateRequest(
            self.loaded, prompt, max_tokens, sampling or GREEDY, chat, self.threads, beams, lookup
        )
        if self._start_job("Generating", generate, request):
            self.generate_panel.begin()

    def run_configuration(self, recipe) -> None:
        if self.loaded is None:
            self.notifications.error("Load a model first.")
            return
        from core.jobs.run import RunRequest, run

        if self._refuse_if_busy():
            return
        loaded = self.loaded
        request = RunRequest(
            loaded, recipe, self.compression_panel.backend_key(), self._run_settings(), self.threads
        )
        self.tabs.setCurrentIndex(1)
        from core.runtime.device import cpu_count

        # the count the Run job sets (None: every usable CPU); torch's own count
        # is per thread, so the GUI thread's would not say the worker's
        threads = self.threads or cpu_count()
        runtime = self.compression_panel.backend_key()
        where = f"{recipe.name} on {runtime}, {loaded.device}, {threads} threads"
        self.live_view.begin(loaded.device, loaded.is_classifier, where)
        # Lay out and paint the Live tab before the model takes the cores:
        # painting five charts for the first time while it ran paused the
        # window 35-55 ms (benchmarks/gui_responsiveness.py).
        QApplication.processEvents(QEventLoop.ProcessEventsFlag.ExcludeUserInputEvents)
        self._start_job(f"Run: {recipe.name}", run, request)

    def run_demo(self, prompt: str, max_tokens: int, sampling, chat: bool) -> None:
        """Original and compressed (the panel's recipe) answer ``prompt`` side by side."""
        if self.loaded is None:
            self.notifications.error("Load a model first.")
            return
        try:
            recipe = self.compression_panel.recipe()
        except ValueError as err:  # a scope that does not parse (the panel says which)
            self.notifications.error(str(err))
            return
        if not recipe.passes:
            self.notifications.error(
                "Set a compression in the panel first: the demo compares it with the original."
            )
            return
        from core.jobs.side_by_side import SideBySideRequest, side_by_side
        from core.runtime.registry import run_title

        loaded = self.loaded
        prebuilt = None
        if self._demo_model and self._demo_model[0] is loaded:
            prebuilt = self._demo_model[1] if self._demo_model[1].recipe == recipe else None
        runtime = self.compression_panel.backend_key()  # the compressed pane's runtime
        request = SideBySideRequest(
            loaded,
            recipe,
            prompt,
            max_tokens,
            sampling,
            chat,
            runtime,
            self._run_settings(),
            prebuilt,
            self.threads,
        )
        title = run_title(recipe.name, runtime)
        if self._start_job(f"Demo: {title}", side_by_side, request):
            self.demo_panel.begin(title, self._measured_quality(recipe, runtime))
            self.tabs.setCurrentWidget(self.demo_panel)

    def _measured_quality(self, recipe, runtime: str) -> str:
        """What the latest run of this configuration measured, for the demo:
        a collapsed one's answers read as noise, and an audience should be
        told before they do."""
        same = [
            r
            for r in self.results_table.records
            if r.model == self.loaded.source
            and r.backend == runtime
            and _same_recipe(r.recipe, recipe)
        ]
        if not same:
            return "Its quality is not measured yet: Run it for perplexity and fidelity."
        last = same[-1]
        if last.broken:
            return f"Measured BROKEN: {last.broken}. Expect its answers to read as noise."
        top1, ratio = last.metric("top1_agreement"), last.metric("ppl_ratio")
        if top1 is None or ratio is None:
            return "Its last run measured no quality (evaluation was off)."
        return (
            f"Measured: top-1 agreement {top1:.1%} with the original, perplexity "
            f"x{ratio:.3f} ({last.eval_protocol.split(':')[0]} protocol)."
        )

    def distill_student(self, shape, settings, resume: bool = True, checkpoint_dir=None) -> None:
        """Train a student of ``shape`` from the loaded model, then measure it
        like any configuration (it joins the table and the trade-off chart)."""
        if self.loaded is None:
            self.notifications.error("Load a model first.")
            return
        from dataclasses import replace

        from core.jobs.distill import DistillRequest, distill_student

        experiment = self._run_settings()
        if experiment.text_source:  # trains on a bundled text's training split, never a file
            settings = replace(settings, text_source=experiment.calibration_source)
        request = DistillRequest(
            self.loaded,
            shape,
            self.store.path.parent,
            settings,
            experiment,
            checkpoint_dir,
            resume,
            threads=self.threads,
        )
        if self._start_job(f"Distil: {shape.recipe().name}", distill_student, request):
            self.distill_panel.begin()
            self.live_view.begin(self.loaded.device)

    def serve(self, use_run: bool, host: str, port: int, lookup_tokens: int = 0) -> None:
        """Serve the loaded model, or the selected run as it was measured, over
        HTTP until Stop (greedy requests with prompt lookup when
        ``lookup_tokens`` > 0); it holds the worker while it serves."""
        if self.loaded is None:
            self.notifications.error("Load a model first.")
            return
        record = None
        if use_run:
            chosen = self.results_table.selected_records()
            if len(chosen) != 1:
                self.notifications.error("Select one run in the table to serve.")
                return
            record = chosen[0]
        from core.jobs.serve import ServeRequest, serve
        from core.runtime.prompt_lookup import PromptLookup

        request = ServeRequest(
            self.loaded, record, host, port, settings=self._run_settings(),
            store_dir=self.store.path.parent, threads=self.threads,
            lookup=PromptLookup(lookup_tokens) if lookup_tokens else None,
        )  # fmt: skip
        if self._start_job("Serving", serve, request):
            self.serve_panel.begin()

    def run_search(self, choice) -> None:
        """Search under the Search panel's limits (core/jobs/search.py); each
        run it measures is stored and shown like any run."""
        if self.loaded is None:
            self.notifications.error("Load a model first.")
            return
        from core.jobs.search import search

        runtime, settings = self.compression_panel.backend_key(), self._run_settings()
        request = choice.request(self.loaded, runtime, settings, self.threads, self.store.path)
        if self._start_job(f"Search: {choice.title}", search, request):
            self.search_panel.begin()

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
            self.export_run(chosen[0], target, formats, overwrite, dialog.gguf_type())

    def export_run(
        self, record: RunRecord, target, formats, overwrite: bool = False, gguf_type="q8_0"
    ) -> None:
        """Hand over exactly what ``record`` measured to ``target`` (atomically)."""
        if self.loaded is None or record.model != self.loaded.source:
            self.notifications.error(
                f"Load {record.model} first: an export rebuilds the run from its model."
            )
            return
        if not formats:
            self.notifications.error("Choose at least one export format.")
            return
        from core.jobs.export import ExportRequest, export

        request = ExportRequest(
            self.loaded,
            target,
            tuple(formats),
            record,
            records=tuple(r for r in self.results_table.records if r.model == record.model),
            overwrite=overwrite,
            settings=self._run_settings(),
            store_dir=self.store.path.parent,
            threads=self.threads,
            gguf_type=gguf_type,
        )
        self._start_job(f"Export: {record.recipe_name}", export, request)

    def _run_settings(self):
        from core.jobs.experiment import ExperimentSettings

        # the panel's evaluation text, if one other than the default is chosen
        return self.compression_panel.eval_text.apply(
            self.experiment_settings or ExperimentSettings()
        )

    def restore(self, record: RunRecord) -> None:
        """Put a run's recipe back into the sliders."""
        from core.passes.recipe import RecipeError

        try:  # runs.jsonl is the user's file: its recipe may be edited or a later version's
            recipe = Recipe.from_dict(record.recipe)
        except RecipeError as err:
            self.notifications.error(
                f"The recipe of {record.recipe_name} cannot be restored: {err}"
            )
            return
        self.compression_panel.set_recipe(recipe)
        self.compression_panel.set_backend(record.backend)
        self.stage.setText(f"Restored: {record.recipe_name}")

    def _show_record(self, record: RunRecord) -> None:
        self.results_table.add(record)
        self.pareto_chart.add(record)

    def _refuse_if_busy(self) -> bool:
        if self.runner.busy:
            self.notifications.error(f"{self.runner.job_name} is still running; cancel it first.")
        return self.runner.busy

    def _start_job(self, name: str, job, request) -> bool:
        """Start core job ``job`` (a function of request, progress, cancel)."""
        from functools import partial

        return self._start(name, partial(job, request))

    def _start(self, name: str, job) -> bool:
        self._outcome = None
        self._noted = set()  # a job's notes, said once (a student's again came with its run)
        if self._refuse_if_busy() or not self.runner.start(name, job):
            return False
        self.stage.setText(name)
        return True

    # --- job signals (GUI thread) ---------------------------------------------
    def _subscribe_panels(self) -> None:
        """Each part of the window subscribes to the job events it shows."""
        from core.jobs.distill import DistillBaseline, StudentNotes
        from core.runtime.beam_generation import BeamProgress
        from core.runtime.generation import GenerationSummary, TextToken

        on, live, note = self.router.subscribe, self.live_view, self.notifications.notice
        on(LoadedModel, self._on_loaded)
        on(RunRecord, self._on_record)
        on(CompressedModel, self._on_compressed)
        on(TokenStep, lambda e: live.add_step(e.index, e.step_s))
        on(
            PerplexityPartial,
            lambda e: live.add_perplexity(e.windows_done, e.ppl, e.ci95_low, e.ci95_high),
        )
        on(ClassificationTiming, lambda e: live.add_classification(e.ms))
        on(AccuracyPartial, lambda e: live.add_accuracy(e.done, e.accuracy))
        on((TextToken, GenerationSummary, BeamProgress), self.generate_panel.on_event)
        on(PaneEvent, self.demo_panel.on_event)
        on(DISTILL_EVENTS, self.distill_panel.on_event)
        on(SEARCH_EVENTS, self.search_panel.on_event)
        on(SERVE_EVENTS, self.serve_panel.on_event)
        on(StudentNotes, lambda e: [self._note_once(n) for n in e.notes])
        on(
            DistillBaseline,
            lambda e: note(
                f"Teacher perplexity {e.teacher_ppl:.2f}, untrained student {e.pruned_ppl:.2f} "
                f"(training monitor: {e.protocol})"
            ),
        )
        on(
            TrainStep,
            lambda e: self.stage.setText(
                f"Fine-tuning: step {e.step}/{e.steps_total}, loss {e.loss:.3f}"
            ),
        )
        on(ClassifierReady, self._on_classifier_ready)
        on(FormatWritten, lambda e: note(f"Export {e.format}: {e.summary}"))
        on(
            ExportResult,
            lambda e: note(
                f"Exported {', '.join(e.formats)} to {e.folder} ({size_text(e.bytes_written)})"
            ),
        )

    def _on_event(self, event) -> None:
        self.router.dispatch(event)

    def _on_display_error(self, event, error: Exception) -> None:
        self.notifications.error(
            f"The window could not show a {type(event).__name__} ({type(error).__name__}: "
            f"{first_line(error)}); the work itself went on, and the rest of the window shows it."
        )

    def _on_loaded(self, event: LoadedModel) -> None:
        self.loaded = event
        self.model_panel.show_description(event.description)
        self.compression_panel.set_model(event.model, event.source, event.description)
        self.distill_panel.set_model_layers(event.description.layers)
        # another model's answers and curves would read as this one's
        self.distill_panel.clear()
        self.demo_panel.clear()
        self.generate_panel.clear()
        self.serve_panel.clear()
        if self.runner.job_name.startswith("Loading"):  # not the classifier just charted
            self.live_view.clear()
        self._gate_work(event)  # after clearing: a gate's line takes the cleared places
        self.pareto_chart.show_model(event.source, event.is_classifier)
        self.search_panel.follow_model_kind(event.is_classifier)
        self.notifications.notice(f"Loaded {event.source} ({event.description.architecture})")
        self._on_busy(self.runner.busy)  # buttons that need a model follow

    def _gate_work(self, loaded: LoadedModel) -> None:
        """The panels whose jobs refuse this model grey their button and say
        why, in the job's own words: an ONNX graph runs as it was built (no
        PyTorch modules to rewrite), and a classifier writes no text."""
        from core.jobs.loaded_graph import DEMO, DISTILLATION, SEARCH, pytorch_refusal
        from core.jobs.side_by_side import DEMO_ON_TEXT
        from core.models.loading import causal_lm_refusal
        from core.runtime.runners import is_onnx_runtime

        graph = is_onnx_runtime(loaded.model)
        refusals = {
            self.distill_panel: pytorch_refusal(loaded.source, DISTILLATION)
            if graph
            else causal_lm_refusal(loaded, "Distillation"),
            self.search_panel: pytorch_refusal(loaded.source, SEARCH) if graph else None,
            self.demo_panel: pytorch_refusal(loaded.source, DEMO)
            if graph
            else causal_lm_refusal(loaded, DEMO_ON_TEXT),
            self.generate_panel: causal_lm_refusal(loaded, "text generation"),
            self.serve_panel: causal_lm_refusal(loaded, "serving"),
        }
        for panel, refusal in refusals.items():
            panel.gate.refuse(refusal)

    def _note_once(self, note: str) -> None:
        if note not in self._noted:
            self._noted.add(note)
            self.notifications.notice(note)

    def _on_compressed(self, event: CompressedModel) -> None:
        self._demo_model = (self.loaded, event)
        for note in event.notes:
            self._note_once(note)

    def _on_classifier_ready(self, event: ClassifierReady) -> None:
        how = "found in the cache" if event.reused else "fine-tuned and cached"
        self.notifications.notice(
            f"Demo classifier {how}: {event.result.accuracy:.1%} accuracy ({event.result.protocol})"
        )

    def _on_record(self, event: RunRecord) -> None:
        try:
            record = self.store.append(event)
        except OSError as err:  # a full disk, a store made read-only: keep what was measured
            record = identified(event)
            self.notifications.error(
                f"{record.recipe_name} was measured but could not be stored "
                f"({first_line(err)}): it is shown until the window closes; export it to keep it."
            )
        self._show_record(record)  # the Results tab shows it; no tab switch mid-work
        if self.runner.job_name.startswith("Distil"):
            self.distill_panel.show_measured(record)
        for note in record.notes:
            self._note_once(note)
        if record.broken:
            self.notifications.error(f"Measured: {record.recipe_name}, BROKEN: {record.broken}")
        else:
            self.notifications.notice(f"Measured: {record.recipe_name}")

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
        # a server runs until it is stopped: "cancelled" read as a failure
        said = "the server stopped" if name == "Serving" else "cancelled"
        self.notifications.notice(f"{name}: {said}")
        self._outcome = f"{name}: {said}"

    def _on_finished(self, name: str) -> None:
        self.live_view.end()
        for view in (self.generate_panel.view, *self.demo_panel.panes.values()):
            view.end(self._outcome)  # a pane left waiting says how its job ended
        if name.startswith("Distil"):
            self.distill_panel.end(self._outcome)
        self.stage.setText(self._outcome or f"Ready ({name}: done)")
        self._outcome = None

    def _on_busy(self, busy: bool) -> None:
        self.progress_bar.setVisible(busy)
        if busy:
            self.progress_bar.setRange(0, 0)
        self.cancel_button.setEnabled(busy)
        self.model_panel.set_busy(busy)
        self.compression_panel.set_busy(busy)
        self.generate_panel.set_ready(not busy and self.loaded is not None)
        self.demo_panel.set_ready(not busy and self.loaded is not None)
        self._export_follows(busy)
        self.distill_panel.set_ready(not busy and self.loaded is not None)
        self.serve_panel.set_ready(not busy and self.loaded is not None)
        self.search_panel.set_ready(not busy and self.loaded is not None, busy)

    def _export_follows(self, busy: bool | None = None) -> None:
        """Export asks for one selected run, and no job running: enabled with
        nothing selected, it could only answer with an error."""
        busy = self.runner.busy if busy is None else busy
        one = len(self.results_table.selected_records()) == 1
        self.export_button.setEnabled(one and not busy)
        self.export_button.setToolTip(
            "Write the selected run as a Hugging Face folder, an ONNX model and/or a report"
            if one
            else "Select one run in the table to export it"
        )

    # --- menu bar and state kept between sessions -----------------------------
    def _build_menu(self) -> None:
        """File, Run and Help menus; Run, Cancel, Export and Open are enabled
        exactly when their buttons are (app/menu_bar.py)."""
        from app.menu_bar import add_action

        bar = self.menuBar()
        file_menu = bar.addMenu("&File")
        self.open_action = add_action(
            file_menu,
            "&Open model folder…",
            self._open_model_folder,
            ("Ctrl+O",),
            self.model_panel.load_button,
        )
        self.export_action = add_action(
            file_menu,
            "&Export selected run…",
            self.open_export_dialog,
            ("Ctrl+E",),
            self.export_button,
        )
        file_menu.addSeparator()
        self.quit_action = add_action(file_menu, "&Quit", self.close, ("Ctrl+Q",))
        run_menu = bar.addMenu("&Run")
        self.run_action = add_action(
            run_menu,
            "&Run the configuration",
            self.compression_panel.run_button.click,
            ("Ctrl+R",),
            self.compression_panel.run_button,
        )
        self.cancel_action = add_action(
            run_menu, "&Cancel", self.runner.cancel, ("Esc", "Ctrl+."), self.cancel_button
        )
        help_menu = bar.addMenu("&Help")
        self.about_action = add_action(help_menu, "&About", self._show_about)
        self.shortcuts_action = add_action(
            help_menu, "&Keyboard shortcuts", self._show_shortcuts, ("F1",)
        )

    def _open_model_folder(self) -> None:
        folder = self._ask_model_folder()
        if folder:
            self.model_panel.load_folder(folder)

    def _ask_model_folder(self) -> str:
        from PySide6.QtWidgets import QFileDialog

        return QFileDialog.getExistingDirectory(self, "Open model folder")

    def _show_about(self) -> None:
        from app.menu_bar import about_box

        self.about = about_box(self)
        self.about.open()  # not exec(): the window keeps running its job

    def _show_shortcuts(self) -> None:
        from app.menu_bar import ShortcutsDialog

        actions = [self.open_action, self.export_action, self.quit_action, self.run_action]
        actions += [self.cancel_action, self.shortcuts_action]
        self.shortcuts_dialog = ShortcutsDialog(actions, self)
        self.shortcuts_dialog.open()

    def _restore_state(self) -> None:
        """Geometry, splitters, tab and the last recipe from the last session."""
        if self.settings is None:
            return
        from app.window_state import restore_state

        panel = self.compression_panel
        notices = restore_state(self.settings, self, self.splitters, self.tabs, panel)
        for notice in notices:
            self.notifications.notice(notice)
        # Kept again at each Run, so a crash does not lose the recipe.
        panel.run_requested.connect(lambda _recipe: self._save_state())

    def _save_state(self) -> None:
        if self.settings is None:
            return
        from app.window_state import save_state

        save_state(self.settings, self, self.splitters, self.tabs, self.compression_panel)

    def closeEvent(self, event) -> None:  # noqa: N802 (Qt's name)
        if self.runner.busy and self._defer_close():
            event.ignore()
            return
        self._save_state()
        self.runner.shutdown()
        super().closeEvent(event)
        gui_gc.release(self)

    def _defer_close(self) -> bool:
        """Closed while a job runs: cancel it and close when it stops (True:
        wait). Waiting in closeEvent froze the window for 10 s, then Qt aborted
        the process on the still-running thread (exit 134) and left the ONNX
        cache's unfinished folder behind; a step that checks no cancel (an ONNX
        trace) can run for minutes. A second close quits at once: every run
        measured so far is already in the results store."""
        if self._closing:
            self._save_state()
            self._quit_now()
            return True
        self._closing = True
        self.runner.cancel()
        self.runner.finished.connect(lambda _name: self.close())
        said = (
            f"Closing once {self.runner.job_name} stops: it is cancelled, and a step that "
            "cannot be interrupted ends first. Close again to quit at once."
        )
        self.stage.setText(said)
        self.notifications.notice(said)
        return True


def _same_recipe(stored: dict, recipe: Recipe) -> bool:
    """A stored run's recipe is ``recipe`` (one that no longer reads is not)."""
    try:
        return Recipe.from_dict(stored) == recipe
    except ValueError:
        return False
