"""The bundled program's entry point. One script for both executables: the
one named ``workbench-cli`` (Windows, where the window's executable has no
console) runs the command line; ``workbench`` is app.launcher: the window
with no arguments or window options, the command line otherwise."""

import multiprocessing
import sys
from pathlib import Path


def main() -> int:
    multiprocessing.freeze_support()  # Windows: a spawned child must not start the app
    if Path(sys.executable).stem.lower() == "workbench-cli":
        from core.cli.main import main as cli_main

        return cli_main()
    from app.launcher import main as launcher_main

    return launcher_main()


if __name__ == "__main__":
    sys.exit(main())
