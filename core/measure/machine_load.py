"""Was the machine busy while we timed? Other programs' CPU use around a
timed region, so a number taken on a busy machine is marked, not trusted.

On Linux, ``/proc/stat`` counts busy CPU time per core since boot; over a
window, the busy time of the cores this process may run on, minus this
process's own CPU time (``getrusage``: all its threads), is what other
programs used. It is read over the timed region itself and in two short
samples, one just before and one just after it, and reported in cores (1.0:
one core fully used on average). Busy when other programs used more than
``BUSY_CORES`` during the region, or on average before and after it. The
load averages (``os.getloadavg``) are kept beside it as information: they
include this process. Elsewhere the check says "unknown" rather than guess.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

BUSY_CORES = 0.3  # other programs' average use, in cores, that marks a timing busy
SAMPLE_S = 0.1  # the short samples just before and after the timed region
# /proc/stat counts in ticks (10 ms at 100 Hz): over a shorter region one
# tick more or less is a whole core or more (a sweep saw "11.2 cores" of 2
# over 10 ms), so a region this short is judged by the samples around it.
MIN_REGION_S = 0.25


@dataclass(frozen=True)
class CpuReading:
    busy_s: float  # busy CPU seconds of the cores we may run on, since boot
    own_s: float  # this process's CPU seconds (every thread), since it started
    wall_s: float  # a monotonic clock


def read_cpu(cpus: set[int] | None = None) -> CpuReading | None:
    """Now, or None where /proc/stat cannot be read (not Linux)."""
    if cpus is None:
        cpus = _usable_cpus()
    try:
        import resource  # Unix only

        with open("/proc/stat") as f:
            lines = [line.split() for line in f if line.startswith("cpu")]
    except (ImportError, OSError):
        return None
    per_core = {int(p[0][3:]): p[1:] for p in lines if p[0] != "cpu"}
    chosen = [per_core[c] for c in cpus if c in per_core] or [p[1:] for p in lines[:1]]
    tick = os.sysconf("SC_CLK_TCK")
    # user nice system idle iowait irq softirq steal (guest is inside user)
    busy = sum(int(v) for fields in chosen for i, v in enumerate(fields[:8]) if i not in (3, 4))
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return CpuReading(busy / tick, usage.ru_utime + usage.ru_stime, time.monotonic())


def _usable_cpus() -> set[int] | None:
    try:
        return os.sched_getaffinity(0)
    except AttributeError:
        return None


def other_cores(start: CpuReading, end: CpuReading) -> tuple[float, float]:
    """(other programs' cores, this process's cores) on average between two readings."""
    wall = max(end.wall_s - start.wall_s, 1e-9)
    own = max(end.own_s - start.own_s, 0.0)
    busy = max(end.busy_s - start.busy_s, 0.0)
    return max(busy - own, 0.0) / wall, own / wall


@dataclass(frozen=True)
class MachineLoad:
    """Other programs' CPU use around one timed region, in cores."""

    status: str  # "measured", or "unknown: why"
    other_cores_before: float | None = None
    other_cores_during: float | None = None
    other_cores_after: float | None = None
    own_cores_during: float | None = None
    seconds: float | None = None
    cpus: int | None = None
    loadavg_before: tuple[float, ...] | None = None
    loadavg_after: tuple[float, ...] | None = None

    @property
    def busy(self) -> str:
        """Empty when quiet (or unknown), else one line saying what was seen."""
        if self.status != "measured":
            return ""
        around = (self.other_cores_before + self.other_cores_after) / 2
        if self.other_cores_during is None:  # too short to read within (MIN_REGION_S)
            if around <= BUSY_CORES:
                return ""
            return (
                f"other programs used {around:.1f} cores on average just before and after "
                f"timing ({self.cpus} usable; the {self.seconds * 1e3:.0f} ms timed were too "
                "short to read within): timings may be slow and noisy"
            )
        if self.other_cores_during <= BUSY_CORES and around <= BUSY_CORES:
            return ""
        return (
            f"other programs used {self.other_cores_during:.1f} cores on average while timing "
            f"({around:.1f} just before and after; {self.cpus} usable): timings may be slow "
            "and noisy"
        )

    def to_dict(self) -> dict:
        return asdict(self)


class MachineLoadMonitor:
    """``start()`` just before a timed region, ``stop()`` just after it."""

    def __init__(
        self,
        sample_s: float = SAMPLE_S,
        read: Callable[[], CpuReading | None] = read_cpu,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.sample_s = sample_s
        self._read, self._sleep = read, sleep
        self._before: float | None = None
        self._start: CpuReading | None = None
        self._loadavg: tuple[float, ...] | None = None

    def _sample(self) -> float | None:
        first = self._read()
        self._sleep(self.sample_s)
        last = self._read()
        return None if first is None or last is None else other_cores(first, last)[0]

    def start(self) -> None:
        self._loadavg = _loadavg()
        self._before = self._sample()
        self._start = self._read()

    def stop(self) -> MachineLoad:
        end = self._read()
        if self._start is None or end is None or self._before is None:
            return MachineLoad("unknown: this system has no /proc/stat to read CPU load from")
        others, own = other_cores(self._start, end)
        after = self._sample()
        cpus = _usable_cpus()
        seconds = end.wall_s - self._start.wall_s
        return MachineLoad(
            status="measured",
            other_cores_before=round(self._before, 3),
            other_cores_during=round(others, 3) if seconds >= MIN_REGION_S else None,
            other_cores_after=round(after if after is not None else others, 3),
            own_cores_during=round(own, 3),
            seconds=round(end.wall_s - self._start.wall_s, 3),
            cpus=len(cpus) if cpus else os.cpu_count(),
            loadavg_before=self._loadavg,
            loadavg_after=_loadavg(),
        )


def _loadavg() -> tuple[float, ...] | None:
    try:
        return tuple(round(v, 2) for v in os.getloadavg())
    except (AttributeError, OSError):
        return None
