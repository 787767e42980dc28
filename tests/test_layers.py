"""The layers of the house hold: app -> cli -> jobs -> (export, distill, onnx)
-> (passes, measure, evaluate, results) -> (runtime, models) -> data ->
(progress, errors). The contracts live in pyproject.toml and are checked by
import-linter, which reads every import (function-level ones too)."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_import_contracts_are_kept():
    # Through this interpreter, not the lint-imports script: a script's
    # first line names the interpreter of the folder it was installed in.
    command = "import sys; from importlinter.cli import lint_imports_command as c; sys.exit(c())"
    done = subprocess.run(
        [sys.executable, "-c", command, "--no-cache"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "BROKEN" not in done.stdout and done.stdout.count("KEPT") >= 3


def test_jobs_are_the_only_way_in_for_the_window():
    """The window starts jobs: no app module calls an operation's internals
    (the experiment, export or distillation functions) directly."""
    internals = (
        "core.jobs.experiment import run_experiment",
        "core.jobs.write_export import run_export",
        "core.distill.train import distill",
    )
    for path in (ROOT / "app").glob("*.py"):
        text = path.read_text()
        for name in internals:
            assert name not in text, f"{path.name} calls {name.split()[-1]} directly"


def test_pass_names_known_without_torch_match_the_registry():
    from core.passes import REGISTRY
    from core.passes.names import PASS_NAMES

    assert sorted(PASS_NAMES) == sorted(REGISTRY)


def test_cli_help_imports_no_torch():
    """Building the parser (every command's --help) loads no torch."""
    code = (
        "import sys; from core.cli.main import build_parser; build_parser(); "
        "print('torch' in sys.modules, 'transformers' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", "False"]
