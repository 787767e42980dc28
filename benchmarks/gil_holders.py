"""Which calls of a search job hold the GIL long enough to freeze a window.

Runs the Search job headless in a thread set up as the window's worker sets
up its jobs (niceness, switch interval, frozen heap: app/worker.py), while
this thread wakes every 10 ms as a GUI timer would. Every wait over
``--gap-ms`` is listed with the C calls of the job thread (over 20 ms, found
by a profile hook) that span it: a C call that does not release the GIL is
what keeps a window from painting, however idle the cores are.

    .venv/bin/python benchmarks/gil_holders.py [--minutes 3] [--gap-ms 25]

A diagnostic, not a measurement of the window: benchmarks/gui_responsiveness.py
is that. The profile hook slows the job's Python code.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

from app.worker import GIL_SWITCH_INTERVAL_S, JOB_NICENESS  # the window's job setup
from core.jobs.experiment import ExperimentSettings
from core.jobs.search import SearchRequest, search
from core.models.loading import load_model
from core.progress import CancelToken
from core.search.limits import Limits

LONG_C_CALL_S = 0.02


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--minutes", type=float, default=3.0)
    parser.add_argument("--gap-ms", type=float, default=25.0)
    args = parser.parse_args()

    loaded = load_model(args.model)
    store = Path(tempfile.mkdtemp(prefix="workbench-gil-")) / "runs.jsonl"
    request = SearchRequest(
        loaded, Limits(max_bytes_ratio=0.35), "ppl", args.minutes * 60, "torch",
        ExperimentSettings(), store_path=store,
    )  # fmt: skip
    long_calls: list[tuple[float, float, str, str]] = []
    open_calls: list[tuple[float, str, str]] = []
    stage = ["starting"]
    done = threading.Event()

    def profile(frame, event, arg):
        if event == "c_call":
            where = f"{Path(frame.f_code.co_filename).name}:{frame.f_lineno}"
            open_calls.append((time.perf_counter(), getattr(arg, "__qualname__", str(arg)), where))
        elif event in ("c_return", "c_exception") and open_calls:
            start, name, where = open_calls.pop()
            if time.perf_counter() - start > LONG_C_CALL_S:
                long_calls.append((start, time.perf_counter(), name, where))

    def job() -> None:
        if sys.platform.startswith("linux"):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), JOB_NICENESS)
        sys.setprofile(profile)
        try:
            for _ in search(request, lambda p: stage.__setitem__(0, p.stage), CancelToken()):
                pass
        finally:
            sys.setprofile(None)
            done.set()

    sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)
    gc.freeze()
    threading.Thread(target=job, daemon=True).start()
    waits, last = [], time.perf_counter()
    while not done.is_set():
        time.sleep(0.01)
        now = time.perf_counter()
        if (now - last) * 1e3 > args.gap_ms:
            waits.append((last, now, stage[0]))
        last = now
    print(f"{len(waits)} waits over {args.gap_ms:.0f} ms in a {args.minutes:g}-minute search")
    for start, end, at in sorted(waits, key=lambda w: w[0] - w[1]):
        print(f"  {(end - start) * 1e3:.1f} ms during {at!r}")
        for c_start, c_end, name, where in long_calls:
            if c_start < end and c_end > start + 0.005:
                print(f"      C call {(c_end - c_start) * 1e3:.1f} ms: {name} at {where}")


if __name__ == "__main__":
    main()
