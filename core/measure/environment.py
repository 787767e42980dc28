"""The environment recorded with every measurement, so a number can be
reproduced or explained (which device, dtype, threads, library versions)."""

from __future__ import annotations

import platform
from dataclasses import asdict, dataclass
from functools import lru_cache

import torch


@lru_cache(maxsize=1)
def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


@dataclass(frozen=True)
class Environment:
    device: str
    device_name: str
    dtype: str
    threads: int
    runner: str
    torch: str
    transformers: str
    python: str
    platform: str

    def to_dict(self) -> dict:
        return asdict(self)


def current_environment(device: torch.device, dtype: torch.dtype, runner: str) -> Environment:
    import transformers

    if device.type != "cuda":
        name = cpu_name()
    elif torch.cuda.is_available():
        name = torch.cuda.get_device_name(device)
    else:  # ONNX Runtime's CUDA provider with a CPU build of torch
        name = "CUDA device (not visible to torch)"
    return Environment(
        device=str(device),
        device_name=name,
        dtype=str(dtype).removeprefix("torch."),
        threads=torch.get_num_threads(),
        runner=runner,
        torch=torch.__version__,
        transformers=transformers.__version__,
        python=platform.python_version(),
        platform=platform.platform(terse=True),
    )
