"""What every speed result shares, whatever the model kind's protocol: the
spread of its runs, and the conditions it was measured under (peak memory,
run count, settings, protocol, environment, other programs' load), written
the same way by each protocol's ``to_dict``."""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass
from importlib import resources


@dataclass(frozen=True)
class Spread:
    median: float
    p10: float
    p90: float

    @classmethod
    def of(cls, values: list[float]) -> Spread:
        if len(values) == 1:
            return cls(values[0], values[0], values[0])
        deciles = statistics.quantiles(values, n=10, method="inclusive")
        return cls(statistics.median(values), deciles[0], deciles[-1])


class MeasuredUnder:
    """Mixed into a protocol's result dataclass, which holds the fields read here."""

    @property
    def machine_busy(self) -> str:
        """Empty when the machine was quiet (or its load unknown), else what was seen."""
        return self.machine_load.busy if self.machine_load else ""

    def conditions_dict(self) -> dict:
        return {
            "peak_memory_bytes": self.peak_memory_bytes,
            "peak_memory_kind": self.peak_memory_kind,
            "runs": self.runs,
            "settings": asdict(self.settings),
            "protocol": self.protocol,
            "environment": self.environment.to_dict(),
            "machine_load": self.machine_load.to_dict() if self.machine_load else {},
            "machine_busy": self.machine_busy,
        }


def bench_prompt_text() -> str:
    """The fixed text every speed protocol feeds the model."""
    return resources.files("resources").joinpath("bench_prompt.txt").read_text()
