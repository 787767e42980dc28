"""``--threads auto``: the thread count chosen by measurement, once per
machine, model size and runtime, and remembered.

More threads is not always faster here: a batch-1 decode step is dozens of
small matrix products, and on a small machine waking a second pool thread for
each can cost more than it saves; on a large one, decode stops scaling long
before the last core. So the choice is a short sweep of decode speed over a
few thread counts on the runtime asked for (the compiled runner's kernels
fix their thread count when they are built, so it is swept in eager
PyTorch), and the answer is kept in the workbench cache with what was
measured, keyed by the CPU, the usable core count, the runtime and the
model's size and family.
"""

from __future__ import annotations

import json
import time

from core.progress import CancelToken, Progress, ProgressSink, ignore_progress

AUTO = "auto"
# Within this of the fastest, the fewest threads win (they leave cores free).
NEAR_BEST = 0.03
CACHE_FILE = "threads_auto.json"


def candidate_counts(cores: int) -> list[int]:
    """1, 2, 4, ... up to ``cores``, plus ``cores`` and three quarters of it."""
    counts = {1, cores, max(1, cores * 3 // 4)}
    n = 2
    while n < cores:
        counts.add(n)
        n *= 2
    return sorted(counts)


def sweep_key(loaded, runtime_key: str) -> str:
    from core.measure.environment import cpu_name
    from core.runtime.device import cpu_count

    size = loaded.description.bytes_in_memory
    bucket = f"{size:.1e}"  # models of about the same size share a choice
    family = loaded.description.model_type
    return f"{cpu_name()}|{cpu_count()} cpus|{runtime_key}|{family}|{bucket} bytes"


def auto_threads(
    loaded,
    runtime_key: str,
    progress: ProgressSink = ignore_progress,
    cancel: CancelToken | None = None,
) -> int:
    """The remembered choice for ``loaded`` on ``runtime_key`` here, or a sweep
    now (then remembered). Leaves torch set to the chosen count."""
    from core.runtime.device import cpu_count, set_threads

    key = sweep_key(loaded, runtime_key)
    known = _read_cache().get(key)
    if isinstance(known, dict) and known.get("threads") in candidate_counts(cpu_count()):
        return set_threads(known["threads"])
    timings, busy = _sweep(loaded, runtime_key, candidate_counts(cpu_count()), progress, cancel)
    fastest = min(timings.values())
    chosen = min(n for n, ms in timings.items() if ms <= fastest * (1 + NEAR_BEST))
    if busy:  # another process shared the cores: its choice is this run's only
        progress(
            Progress(
                f"Threads chosen by measurement: {chosen}, on a busy machine ({busy}): "
                "used for this run, not remembered",
                None,
            )
        )
        return set_threads(chosen)
    entries = _read_cache()
    entries[key] = {
        "threads": chosen,
        "decode_ms_per_token": {str(n): round(ms, 3) for n, ms in timings.items()},
        "measured_at": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    _write_cache(entries)
    progress(Progress(f"Threads chosen by measurement: {chosen}", None))
    return set_threads(chosen)


def _sweep(loaded, runtime_key, counts, progress, cancel) -> tuple[dict[int, float], str]:
    """Decode ms/token by thread count, and the machine load that made any
    of them busy ("" when none): a sweep beside another process chose 1
    thread at 1.4 ms against 15.4 for 2 and kept it "once per machine"."""
    from core.jobs.on_runtime import prepare
    from core.measure.speed import BenchSettings, run_benchmark
    from core.runtime.device import set_threads
    from core.runtime.registry import runtime

    settings = BenchSettings(prompt_tokens=16, new_tokens=16, warmup=1, min_repeats=3)
    swept_on = "torch" if runtime(runtime_key).compiled else runtime_key
    timings, busy = {}, ""
    for n in counts:
        progress(Progress(f"Choosing threads: decode with {n}", None))
        set_threads(n)  # an ONNX Runtime session takes torch's count when it opens
        on = prepare(loaded, swept_on, 0, progress, cancel).loaded
        result = run_benchmark(on, settings, cancel)
        timings[n] = result.decode_ms_per_token.median
        busy = busy or (result.machine_busy or "")
    return timings, busy


def _cache_path():
    from core.models.default_model import cache_root

    return cache_root() / CACHE_FILE


def _read_cache() -> dict:
    try:
        data = json.loads(_cache_path().read_text())
    except (OSError, ValueError):
        return {}  # none yet, or unreadable: measure again
    return data if isinstance(data, dict) else {}


def _write_cache(entries: dict) -> None:
    """Written beside and renamed into place: a reader never sees half a file."""
    import os

    path = _cache_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(f".{path.name}.{os.getpid()}")
    staging.write_text(json.dumps(entries, indent=2))
    os.replace(staging, path)
