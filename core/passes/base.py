"""What every pass shares: option metadata, the registry, the apply context.

Modelled on torchao's versioned configs and Olive's pass options: each field
carries type, default, range/step or choices, label and description, which is
exactly what a panel of sliders needs to draw itself.
"""

from __future__ import annotations

from dataclasses import MISSING, dataclass, field, fields
from typing import Any, ClassVar

from core.jobs import CancelToken, Progress, ProgressSink, ignore_progress


def option(
    default: Any,
    *,
    label: str,
    description: str,
    minimum: float | None = None,
    maximum: float | None = None,
    step: float | None = None,
    choices: tuple | None = None,
):
    """A config field with the metadata a GUI control needs."""
    meta = {
        "label": label,
        "description": description,
        "minimum": minimum,
        "maximum": maximum,
        "step": step,
        "choices": choices,
    }
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class OptionSpec:
    name: str
    type: str  # "int", "float", "bool", "choice"
    default: Any
    label: str
    description: str
    minimum: float | None
    maximum: float | None
    step: float | None
    choices: tuple | None


@dataclass
class PassContext:
    """What a pass may use besides the model: calibration token windows
    (never the texts used to report quality), progress and cancel."""

    calibration: list | None = None  # list of 1-D LongTensors
    progress: ProgressSink = ignore_progress
    cancel: CancelToken = field(default_factory=CancelToken)
    notes: list[str] = field(default_factory=list)  # honest labels shown with results

    def progress_fraction(self, done: int, total: int, stage: str = "Compressing") -> None:
        self.progress(Progress(stage, done / total if total else None))


@dataclass(frozen=True)
class PassConfig:
    """Base of every pass config. Subclasses set the class variables."""

    name: ClassVar[str]
    version: ClassVar[int] = 1
    kind: ClassVar[str]  # "quantize", "prune", "low_rank"
    title: ClassVar[str]
    needs_calibration: ClassVar[bool] = False

    def __post_init__(self) -> None:
        for spec in self.options():
            value = getattr(self, spec.name)
            if spec.choices is not None and value not in spec.choices:
                raise ValueError(f"{self.name}.{spec.name} must be one of {spec.choices}")
            if spec.minimum is not None and value < spec.minimum:
                raise ValueError(f"{self.name}.{spec.name} must be >= {spec.minimum}")
            if spec.maximum is not None and value > spec.maximum:
                raise ValueError(f"{self.name}.{spec.name} must be <= {spec.maximum}")

    @classmethod
    def options(cls) -> list[OptionSpec]:
        specs = []
        for f in fields(cls):
            meta = f.metadata
            if "label" not in meta:
                continue
            default = f.default if f.default is not MISSING else None
            kind = "choice" if meta["choices"] else type(default).__name__
            specs.append(OptionSpec(f.name, kind, default, **meta))
        return specs

    def to_dict(self) -> dict:
        return {"pass": self.name, "version": self.version} | {
            spec.name: getattr(self, spec.name) for spec in self.options()
        }

    def summary(self) -> str:
        values = ", ".join(f"{s.name}={getattr(self, s.name)}" for s in self.options())
        return f"{self.name}({values})"

    def apply(self, model, context: PassContext):
        """Change ``model`` (already a private copy) and return it."""
        raise NotImplementedError

    def estimate(self, entries: list, model_config) -> list:
        """Sizes after this pass, from shapes alone (core.size_estimate.Entry
        list in, list out); the default is no change in bytes."""
        return entries


REGISTRY: dict[str, type[PassConfig]] = {}


def register(cls: type[PassConfig]) -> type[PassConfig]:
    if cls.name in REGISTRY:
        raise ValueError(f"pass {cls.name!r} registered twice")
    REGISTRY[cls.name] = cls
    return cls
