"""SIGTERM during a command exits as an interruption (130), even when a library
catches the handler's KeyboardInterrupt and raises its own error instead, as
torch did in CI while a folder was being loaded back."""

from __future__ import annotations

import os
import signal

import pytest

from core.cli import main as cli_main


class _RewordingCommand:
    """Receives SIGTERM, then fails the way a library that swallowed it does."""

    def __init__(self, raised: type[Exception]):
        self.raised = raised

    def run(self, args):
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            for _ in range(1000):  # the handler runs between bytecodes
                pass
        except KeyboardInterrupt:
            raise self.raised("could not determine the shape of object type") from None
        raise AssertionError("SIGTERM did not reach the handler")


@pytest.mark.parametrize("raised", [ValueError, RuntimeError, OSError])
def test_a_reworded_terminate_still_exits_interrupted(monkeypatch, capsys, raised):
    monkeypatch.setattr(cli_main.info, "run", _RewordingCommand(raised).run)
    before = signal.getsignal(signal.SIGTERM)
    assert cli_main.main(["info"]) == 130
    err = capsys.readouterr().err
    assert err.strip() == "interrupted"
    assert signal.getsignal(signal.SIGTERM) is before  # the default is back


def test_the_same_errors_without_a_signal_are_reported_as_errors(monkeypatch, capsys):
    def failing(args):
        raise ValueError("a real bad input")

    monkeypatch.setattr(cli_main.info, "run", failing)
    assert cli_main.main(["info"]) == 2
    assert "error: a real bad input" in capsys.readouterr().err
