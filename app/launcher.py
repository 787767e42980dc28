"""`workbench`: with no arguments, the window; with a command, the headless CLI.

The CLI path never imports Qt, so `workbench bench` runs on a machine without
a display or Qt's system libraries.
"""

from __future__ import annotations

import sys

# Options of the window (app/application.py); any other first argument is the CLI's.
WINDOW_OPTIONS = ("--model", "-m", "--threads", "--screenshot")


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args and args[0].split("=", 1)[0] not in WINDOW_OPTIONS:
        from core.cli.main import main as cli_main

        return cli_main(args)
    from app.application import run_window

    return run_window(args)


if __name__ == "__main__":
    sys.exit(main())
