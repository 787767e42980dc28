"""Does the job thread's niceness starve its timings when other programs run?

The window runs every job in a thread at niceness 10 (app/worker.py,
JOB_NICENESS), and torch's compute threads inherit it, so the GUI thread
gets a core when it wakes. A program at the normal niceness 0 competing for
the same cores would also win them, and then the window's numbers would be
slower than the CLI's. This measures it: decode ms/token of one model (the
protocol of core/measure/speed.py, one run per measurement) in a fresh thread at
niceness 0 and at niceness 10, each with and without competing busy
processes at niceness 0, in interleaved rounds (the order rotating each
round), medians over rounds.

    .venv/bin/python benchmarks/niceness_under_load.py [--model default] [--rounds 5]
        [--competitors 1] [--threads N]

Run it alone on the machine: its point is the load it makes itself.

Last line: {"decode_ms": {condition: median}, "rounds": {condition: [...]},
"nice_ratio_quiet", "nice_ratio_loaded", "load_slowdown_nice0",
"load_slowdown_nice10", "niceness_applied", ...}; conditions are
"nice0_quiet", "nice10_quiet", "nice0_loaded", "nice10_loaded".
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time

JOB_NICENESS = 10  # app/worker.py's value (not imported: that module needs Qt)
SPIN = "while True: pass"
CONDITIONS = ("nice0_quiet", "nice10_quiet", "nice0_loaded", "nice10_loaded")


def condition(name: str) -> tuple[int, bool]:
    """(niceness, with competing load) of a condition name."""
    nice, load = name.split("_")
    return int(nice.removeprefix("nice")), load == "loaded"


def measure_in_thread(loaded, settings, niceness: int) -> tuple[float, int | None, str]:
    """(decode ms/token, the niceness the thread really had, machine-busy line)
    of one protocol run in a fresh thread at ``niceness``: a new thread starts
    at the process's niceness and torch's compute threads it starts inherit
    its own, as in the window's job thread."""
    from core.measure.speed import run_benchmark

    out: dict = {}

    def work() -> None:
        try:
            tid = threading.get_native_id()
            if niceness:
                os.setpriority(os.PRIO_PROCESS, tid, niceness)
            out["niceness"] = os.getpriority(os.PRIO_PROCESS, tid)
        except (AttributeError, OSError):  # not Linux, or not permitted
            out["niceness"] = None
        result = run_benchmark(loaded, settings)
        out["ms"] = result.decode_ms_per_token.median
        out["busy"] = result.machine_busy

    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    return out["ms"], out["niceness"], out["busy"]


def start_competitors(count: int) -> list[subprocess.Popen]:
    """``count`` busy processes at niceness 0 (each spins one core)."""
    procs = [subprocess.Popen([sys.executable, "-c", SPIN]) for _ in range(count)]
    time.sleep(0.3)  # running before the timing starts
    return procs


def stop(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        p.kill()
        p.wait()


def rotated(round_index: int) -> list[str]:
    k = round_index % len(CONDITIONS)
    return list(CONDITIONS[k:] + CONDITIONS[:k])


def summarise(rounds: dict[str, list[float]]) -> dict:
    """Medians per condition and the ratios the question needs (> 1: slower)."""
    med = {name: statistics.median(values) for name, values in rounds.items()}
    return {
        "decode_ms": {k: round(v, 3) for k, v in med.items()},
        "nice_ratio_quiet": round(med["nice10_quiet"] / med["nice0_quiet"], 3),
        "nice_ratio_loaded": round(med["nice10_loaded"] / med["nice0_loaded"], 3),
        "load_slowdown_nice0": round(med["nice0_loaded"] / med["nice0_quiet"], 3),
        "load_slowdown_nice10": round(med["nice10_loaded"] / med["nice10_quiet"], 3),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default", help="'default' or a model folder")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default 5)")
    parser.add_argument(
        "--competitors", type=int, default=1, help="busy processes at niceness 0 (default 1)"
    )
    parser.add_argument("--prompt-tokens", type=int, default=128)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all)")
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.competitors < 1:
        parser.error("--rounds and --competitors must be at least 1")

    from core.measure.speed import BenchSettings
    from core.models.loading import load_model
    from core.runtime.device import set_threads

    threads = set_threads(args.threads)
    loaded = load_model(args.model, device="cpu")
    settings = BenchSettings(
        prompt_tokens=args.prompt_tokens,
        new_tokens=args.new_tokens,
        warmup=0,
        min_repeats=1,
        min_time_s=0,
    )
    print(
        f"{args.model}, {threads} torch threads on {os.cpu_count()} CPUs; job niceness "
        f"{JOB_NICENESS} against 0; load: {args.competitors} busy process(es) at niceness 0; "
        f"one run of: {settings.describe()}",
        flush=True,
    )
    for niceness in (0, JOB_NICENESS):  # warm-up, not counted
        measure_in_thread(loaded, settings, niceness)
    rounds: dict[str, list[float]] = {name: [] for name in CONDITIONS}
    applied: dict[str, int | None] = {}
    busy: dict[str, list[str]] = {name: [] for name in CONDITIONS}
    for r in range(args.rounds):
        for name in rotated(r):
            niceness, loaded_machine = condition(name)
            procs = start_competitors(args.competitors) if loaded_machine else []
            try:
                ms, applied[name], seen = measure_in_thread(loaded, settings, niceness)
            finally:
                stop(procs)
            rounds[name].append(ms)
            busy[name].append(seen)
        print(
            f"round {r + 1}/{args.rounds}: "
            + ", ".join(f"{name} {rounds[name][-1]:.2f}" for name in CONDITIONS),
            flush=True,
        )
    summary = summarise(rounds)
    print(f"{'condition':16s} {'ms/token':>9s}  rounds")
    for name in CONDITIONS:
        values = " ".join(f"{v:.2f}" for v in rounds[name])
        print(f"{name:16s} {summary['decode_ms'][name]:9.2f}  {values}")
    print(
        f"niceness {JOB_NICENESS} / 0: {summary['nice_ratio_quiet']:.3f} quiet, "
        f"{summary['nice_ratio_loaded']:.3f} under load; load slows niceness 0 by "
        f"{summary['load_slowdown_nice0']:.3f}x and niceness {JOB_NICENESS} by "
        f"{summary['load_slowdown_nice10']:.3f}x"
    )
    quiet_busy = [b for name in ("nice0_quiet", "nice10_quiet") for b in busy[name] if b]
    if quiet_busy:
        print(f"warning: the quiet conditions saw other load: {quiet_busy[0]}")
    print(
        json.dumps(
            summary
            | {
                "rounds": {k: [round(v, 3) for v in vals] for k, vals in rounds.items()},
                "niceness_applied": applied,
                "quiet_runs_on_a_busy_machine": len(quiet_busy),
                "competitors": args.competitors,
                "threads": threads,
                "model": args.model,
                "protocol": settings.describe(),
            }
        )
    )


if __name__ == "__main__":
    main()
