"""`python -m app` opens the window."""

import sys

from app.application import run_window

sys.exit(run_window(sys.argv[1:]))
