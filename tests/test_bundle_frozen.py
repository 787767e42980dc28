"""What the desktop bundle (a frozen program: sys.frozen) cannot do says so
in one line: the compiled runner needs a C++ compiler and headers."""

import sys

import pytest

from core.cli.main import main as cli_main
from core.model_kinds import CAUSAL_LM
from core.runtime.registry import RUNTIMES, UnknownRuntimeError, check_supports, unavailable


@pytest.fixture
def frozen(monkeypatch):
    monkeypatch.setattr(sys, "frozen", True, raising=False)


def test_a_checkout_has_every_runtime():
    assert [key for key in RUNTIMES if unavailable(key)] == []


def test_the_bundle_refuses_only_the_compiled_runner(frozen):
    assert [key for key in RUNTIMES if unavailable(key)] == ["torch-compile"]
    with pytest.raises(UnknownRuntimeError, match="not available in the desktop bundle"):
        check_supports("torch-compile", CAUSAL_LM)
    assert check_supports("torch", CAUSAL_LM).key == "torch"
    assert check_supports("ort", CAUSAL_LM).key == "ort"


def test_the_cli_says_so_in_one_line(frozen, tiny_llama_dir, capsys):
    args = ["bench", "-m", str(tiny_llama_dir), "--backend", "torch-compile", "--warmup", "0"]
    assert cli_main(args) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]  # after the loading progress
    assert last.startswith("error: PyTorch compiled is not available in the desktop bundle")
