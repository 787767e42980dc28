"""Screenshot of the window showing a run flagged broken, for the README.

Measures three configurations of the embedded default model (SmolLM2-135M)
with core.jobs.experiment.run_experiment, exactly as the window's Run does: the
original, int8 weights (healthy), and low-rank factorisation at 5% of full
rank, which wrecks it. Whether a run is broken is decided by core
(core/evaluate/health.py) from the measured top-1 agreement and perplexity
ratio; this script only shows what it decided, and stops if the destructive
run was not flagged. (The tiny random test models cannot show this: their
tied embeddings dominate the logits, so even 5% rank keeps top-1 at 100%.)
Then the real window opens on those records (a temporary results store),
with the original and the broken run selected so the compare view shows
them, and is grabbed. Takes 1-3 minutes on a CPU. Run under a display:

    xvfb-run -a -s "-screen 0 1400x900x24" .venv/bin/python scripts/screenshot_broken.py [OUT.png]

Default output: resources/screenshots/broken_run.png. ``--records RUNS.jsonl``
shows runs this script measured before (a store it wrote) instead of
measuring again, to retake the picture after a change to the window.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODEL = "default"
os.environ.setdefault("WORKBENCH_DATA_DIR", tempfile.mkdtemp(prefix="workbench-broken-"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from PySide6.QtCore import QItemSelectionModel, QTimer  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

from core.evaluate.perplexity import PerplexityProtocol  # noqa: E402
from core.jobs.experiment import ExperimentSettings, run_experiment  # noqa: E402
from core.measure.speed import BenchSettings  # noqa: E402
from core.passes import REGISTRY  # noqa: E402
from core.passes.recipe import Recipe  # noqa: E402
from core.results.store import ResultsStore, RunRecord  # noqa: E402

# A short protocol (the screenshot shows the flag, not headline numbers).
SETTINGS = ExperimentSettings(
    bench=BenchSettings(prompt_tokens=32, new_tokens=16, warmup=1, min_repeats=3, min_time_s=0),
    perplexity=PerplexityProtocol(context_tokens=256, stride=128, quick_windows=6),
)
RECIPES = [
    Recipe(()),
    Recipe((REGISTRY["int8_weight_only"](),)),
    Recipe((REGISTRY["low_rank"](rank_ratio=0.05),)),
]


def _print_stage(progress) -> None:
    if progress.stage != getattr(_print_stage, "last", None):
        print(f"  {progress.stage}", flush=True)
        _print_stage.last = progress.stage


def measure(store: ResultsStore) -> list[RunRecord]:
    """Run each recipe through run_experiment and keep its RunRecord."""
    from core.models.loading import load_model

    loaded = load_model(MODEL)
    records = []
    for recipe in RECIPES:
        for event in run_experiment(loaded, recipe, SETTINGS, _print_stage):
            if isinstance(event, RunRecord):
                records.append(store.append(event))
    return records


def main() -> int:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", nargs="?", default=ROOT / "resources/screenshots/broken_run.png")
    parser.add_argument("--records", type=Path, help="a runs.jsonl this script wrote before")
    args = parser.parse_args()
    out = Path(args.out)
    if args.records:
        store = ResultsStore(args.records)
        records = store.load()
    else:
        store = ResultsStore(Path(os.environ["WORKBENCH_DATA_DIR"]) / "runs.jsonl")
        records = measure(store)
        print(f"runs kept in {store.path}")
    for r in records:
        print(
            f"{r.recipe_name}: ppl {r.ppl:.1f}, top-1 {r.top1_agreement:.3f}, "
            f"broken: {r.broken or '-'}"
        )
    if not records[-1].broken or records[0].broken:
        print("the destructive run was not flagged broken (or the original was): no screenshot")
        return 1

    from app.main_window import MainWindow

    app = QApplication(sys.argv[:1])
    window = MainWindow(threads=1, store=store, experiment_settings=SETTINGS)
    window.resize(1400, 900)
    window.show()
    window.load_model(MODEL)  # the model panel describes it; the chart shows its runs

    def when_loaded() -> None:
        if window.runner.busy:
            QTimer.singleShot(200, when_loaded)
            return
        window.tabs.setCurrentIndex(0)
        table = window.results_table
        flags = QItemSelectionModel.SelectionFlag.Select | QItemSelectionModel.SelectionFlag.Rows
        for row in (0, table.rowCount() - 1):  # the compare view: original against broken
            table.selectionModel().select(table.model().index(row, 0), flags)
        QTimer.singleShot(800, shoot)

    def shoot() -> None:
        out.parent.mkdir(parents=True, exist_ok=True)
        window.grab().save(str(out))
        print(f"saved {out}")
        app.quit()

    QTimer.singleShot(300, when_loaded)
    app.exec()
    return 0


if __name__ == "__main__":
    sys.exit(main())
