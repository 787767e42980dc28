"""What `compress` prints names how each number was measured (runtime, both
protocols), shows top-1 agreement as a share, and does not present the
original's agreement with itself as a measurement (an audit's findings)."""

from __future__ import annotations

from core.cli.main import main
from tests.tiny_models import save_tiny_model


def _compress(model, capsys, *extra):
    argv = ["compress", "-m", str(model), "--device", "cpu", "--threads", "1", *extra]
    assert main(argv) == 0
    return capsys.readouterr().out


def test_numbers_name_their_runtime_and_protocols(private_store, capsys):
    model = save_tiny_model("llama", private_store / "m")
    original = _compress(model, capsys)
    assert "top-1 agreement the original itself" in original
    assert "torch on cpu, 1 threads" in original
    assert "\n  protocol prompt " in original and "\n  eval protocol quick: " in original
    size = original.split("  size ")[1].splitlines()[0]  # a sentence, not a Python dict
    assert "{" not in size and "mlp " in size and size.split(" (")[0].endswith(("MB", "kB"))

    pruned = _compress(model, capsys, "--pass", "prune_mlp:fraction=0.25")
    agreement = pruned.split("top-1 agreement ")[1].split(";")[0]
    assert agreement.endswith("%") and 0 <= float(agreement[:-1]) <= 100


def test_generate_and_bench_name_their_runner_and_threads(private_store, capsys):
    model = save_tiny_model("llama", private_store / "m")
    argv = ["-m", str(model), "--device", "cpu", "--threads", "1"]
    assert main(["generate", *argv, "-n", "4"]) == 0
    assert "one run, torch-eager on cpu, 1 threads]" in capsys.readouterr().err
    assert main(["bench", *argv]) == 0
    assert "1 threads, runner torch-eager" in capsys.readouterr().out.splitlines()[0]
