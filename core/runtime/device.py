"""Which device and dtype to run on, and how many CPU threads to use."""

from __future__ import annotations

import os

import torch

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` picks CUDA when torch really has it, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        from core.errors import UnsupportedModelError

        raise UnsupportedModelError("CUDA was asked for, but torch sees no CUDA device here.")
    return device


def default_dtype(device: torch.device) -> torch.dtype:
    """bf16 (or fp16) on a GPU, where it is fast; fp32 on the CPU."""
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


def resolve_dtype(name: str | None, device: torch.device) -> torch.dtype:
    if name in (None, "auto"):
        return default_dtype(device)
    if name not in DTYPES:
        raise ValueError(f"unknown dtype {name!r}; choose one of {', '.join(DTYPES)}")
    return DTYPES[name]


def cpu_count() -> int:
    """CPUs this process may use (respects affinity and container limits)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def set_threads(threads: int | None) -> int:
    """Set torch's intra-op thread count (None: all usable CPUs); returns it.

    Every measurement records this number: on a small machine the same model
    runs at very different speeds with 1 or 2 threads.
    """
    n = threads or cpu_count()
    if n < 1:
        raise ValueError("threads must be at least 1")
    torch.set_num_threads(n)
    return torch.get_num_threads()


def synchronize(device: torch.device) -> None:
    """Wait for queued device work so a timer measures it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
