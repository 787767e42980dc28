"""Peak memory during a timed region.

On CUDA this is torch's allocator peak. On the CPU it is the process's peak
resident set size: Linux lets us reset the high-water mark (``clear_refs``)
before the region and read ``VmHWM`` after, so the number belongs to the
region, not to whatever the process did before (such as a model conversion).
Where the reset is not possible the lifetime peak is reported and labelled so.
A model run by ONNX Runtime on CUDA allocates through ONNX Runtime's own
arena, which torch's statistics never see and onnxruntime's Python API does
not report: its peak is "not measured" rather than torch's (near zero) number.
"""

from __future__ import annotations

import resource
import sys
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class PeakMemory:
    bytes: int | None  # None: not measured (``kind`` says why)
    kind: str  # what the number is, shown beside it


class PeakMemoryTracker:
    def __init__(self, device: torch.device, onnx_runtime: bool = False) -> None:
        self.device = device
        self._rss_reset = False
        # CUDA memory of an ONNX Runtime session: invisible to torch's allocator.
        self._unseen = onnx_runtime and device.type == "cuda"

    def start(self) -> None:
        if self._unseen:
            return
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
            return
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")  # 5: reset the peak RSS (VmHWM) to the current RSS
            self._rss_reset = True
        except OSError:
            self._rss_reset = False

    def stop(self) -> PeakMemory:
        if self._unseen:
            return PeakMemory(
                None, "not measured: ONNX Runtime's CUDA memory is invisible to torch's statistics"
            )
        if self.device.type == "cuda":
            return PeakMemory(torch.cuda.max_memory_allocated(self.device), "cuda allocator peak")
        if self._rss_reset:
            hwm = _vm_hwm_bytes()
            if hwm is not None:
                return PeakMemory(hwm, "process peak RSS during the run")
        maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        scale = 1 if sys.platform == "darwin" else 1024  # bytes on macOS, KiB on Linux
        return PeakMemory(maxrss * scale, "process peak RSS since start")


def _vm_hwm_bytes() -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def current_memory_bytes(device: torch.device | None = None) -> int:
    """Memory in use now: CUDA allocated on a GPU, else the process's RSS.

    Cheap enough to sample a few times a second from the GUI thread.
    """
    if device is not None and device.type == "cuda":
        return torch.cuda.memory_allocated(device)
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * resource.getpagesize()
    except OSError:
        maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return maxrss * (1 if sys.platform == "darwin" else 1024)  # peak, where RSS is unknown
