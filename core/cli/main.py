"""The headless command line: the same jobs the window runs, printed.

``workbench info|generate|bench|eval|compress|export|distill|train-classifier|sensitivity|``
``search|serve`` (or ``workbench-cli``). One module per command: each adds its parser and runs
a job. Every command works on the embedded default model with no arguments;
bad input exits with status 2 and a one-line reason on stderr. Building the
parser imports no torch, so ``--help`` answers at once.
"""

from __future__ import annotations

import signal
import sys
import threading
from contextlib import contextmanager

from core.cli import args as cli_args
from core.cli import (
    bench,
    compress,
    distill,
    evaluate,
    export,
    generate,
    info,
    search,
    sensitivity,
    serve,
    train_classifier,
)
from core.cli.common import EXIT_BAD_INPUT
from core.errors import Cancelled, WorkbenchError
from core.message_text import one_line

COMMANDS = {
    "info": info,
    "generate": generate,
    "bench": bench,
    "eval": evaluate,
    "train-classifier": train_classifier,
    "compress": compress,
    "export": export,
    "distill": distill,
    "sensitivity": sensitivity,
    "search": search,
    "serve": serve,
}


def build_parser():
    parser = cli_args.OneLineParser(
        prog="workbench",
        description="Compression Workbench, headless. `workbench` alone opens the window.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS.values():
        command.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except cli_args.ArgumentsError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    terminate = TerminateRequest()
    try:
        with stopped_by_terminate(terminate):
            COMMANDS[args.command].run(args)
    except (WorkbenchError, ValueError, OSError) as err:
        if terminate.received:  # the signal's KeyboardInterrupt, reworded by a library
            return _interrupted()
        if isinstance(err, OSError):  # a folder not writable, a full disk: the system's words
            print(f"error: {one_line(os_error_text(err))}", file=sys.stderr)
        elif isinstance(err, Cancelled):
            print("cancelled", file=sys.stderr)
        else:  # escaped: a message quoting user input stays one line
            print(f"error: {one_line(str(err))}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        return _interrupted()
    except Exception:
        if terminate.received:
            return _interrupted()
        raise
    return 0


def _interrupted() -> int:
    print("interrupted", file=sys.stderr)
    return 130


def os_error_text(err: OSError) -> str:
    """``[Errno 28] No space left on device: '/x'`` as "/x: No space left on device"."""
    if err.strerror and err.filename:
        return f"{err.filename}: {err.strerror}"
    return err.strerror or str(err) or type(err).__name__


class TerminateRequest:
    """Whether SIGTERM or SIGHUP arrived. The handler raises KeyboardInterrupt, but
    a library running Python inside C (torch building a tensor from a sequence)
    can replace it with its own error; the flag keeps the exit an interruption."""

    def __init__(self):
        self.received = False


@contextmanager
def stopped_by_terminate(request: TerminateRequest | None = None):
    """SIGTERM (kill, timeout, systemd, docker stop) and SIGHUP stop a command
    as Ctrl-C does, so the same clean-up runs: half-written folders removed,
    locks released. Only in the main thread, where Python runs handlers."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum, frame):
        if request is not None:
            request.received = True
        raise KeyboardInterrupt

    wanted = [signal.SIGTERM] + ([signal.SIGHUP] if hasattr(signal, "SIGHUP") else [])
    before = {sig: signal.signal(sig, interrupt) for sig in wanted}
    try:
        yield
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)


if __name__ == "__main__":
    sys.exit(main())
