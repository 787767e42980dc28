"""What every pass shares: option metadata, the registry, the apply context.

Modelled on torchao's versioned configs and Olive's pass options: each field
carries type, default, range/step or choices, label and description, which is
exactly what a panel of sliders needs to draw itself.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import MISSING, dataclass, field, fields
from typing import Any, ClassVar

from core.message_text import shown
from core.progress import CancelToken, Progress, ProgressSink, ignore_progress


def option(
    default: Any,
    *,
    label: str,
    description: str,
    minimum: float | None = None,
    maximum: float | None = None,
    step: float | None = None,
    choices: tuple | None = None,
    kw_only: bool = False,
    recorded: bool = False,
):
    """A config field with the metadata a GUI control needs. A ``recorded``
    option is written by the run (what a budget decided, e.g. heal's steps)
    so the recipe rebuilds what was measured: the panel draws no control for it."""
    meta = {
        "label": label,
        "description": description,
        "minimum": minimum,
        "maximum": maximum,
        "step": step,
        "choices": choices,
        "recorded": recorded,
    }
    return field(default=default, metadata=meta, kw_only=kw_only)


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
    recorded: bool = False  # set by the run, not by a person (no control in the panel)


class OptionError(ValueError):
    """A pass option of the wrong type or outside its range."""


def check_option(pass_name: str, spec: OptionSpec, value: Any) -> Any:
    """``value`` as the option's declared type (the type of its default), or
    OptionError saying what is wrong. Strict: a recipe is data from a file or a
    command line, so "0.25", True (a bool is an int in Python), 2.5 layers, NaN
    and infinities are refused rather than coerced."""
    where = f"{pass_name}.{spec.name}"
    kind = type(spec.default)
    if kind is bool and not isinstance(value, bool):
        raise OptionError(f"{where} must be true or false, got {shown(value)}")
    if kind is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise OptionError(f"{where} must be a whole number, got {shown(value)}")
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise OptionError(f"{where} must be a number, got {shown(value)}")
        if isinstance(value, int) and abs(value) > 2**53:  # float() would round or overflow
            raise OptionError(f"{where} is out of range, got {shown(value)}")
        value = float(value)
        if not math.isfinite(value):
            raise OptionError(f"{where} must be a finite number, got {shown(value)}")
    if kind is str and not isinstance(value, str):
        raise OptionError(f"{where} must be text, got {shown(value)}")
    if spec.choices is not None and value not in spec.choices:
        choices = ", ".join(str(c) for c in spec.choices)
        raise OptionError(f"{where} must be one of {choices}, got {shown(value)}")
    low, high = spec.minimum, spec.maximum
    if (low is not None and value < low) or (high is not None and value > high):
        if low is not None and high is not None:
            raise OptionError(f"{where} must be between {low:g} and {high:g}, got {shown(value)}")
        if low is not None:
            raise OptionError(f"{where} must be >= {low:g}, got {shown(value)}")
        raise OptionError(f"{where} must be <= {high:g}, got {shown(value)}")
    return value


@dataclass
class PassContext:
    """What a pass may use besides the model: calibration token windows
    (never the texts used to report quality), progress and cancel."""

    calibration: list | None = None  # list of 1-D LongTensors
    progress: ProgressSink = ignore_progress
    cancel: CancelToken = field(default_factory=CancelToken)
    notes: list[str] = field(default_factory=list)  # honest labels shown with results
    # The job's training step for the heal pass (core.jobs.heal: distillation
    # from the original); passes cannot import core.distill, so it is injected.
    # None outside a job: heal refuses.
    heal: Callable | None = None
    # Set by a pass whose outcome a budget decided (heal's steps): the config
    # as applied, recorded in the run's recipe in place of the one asked for.
    as_applied: PassConfig | None = None
    # What the run keeps beside its recipe (heal: steps, losses; the job adds the weights sha256).
    artifact: dict = field(default_factory=dict)

    def progress_fraction(self, done: int, total: int, stage: str = "Compressing") -> None:
        self.progress(Progress(stage, done / total if total else None))


SCOPE_OPTIONS = ("layers", "parts")


@dataclass(frozen=True)
class PassConfig:
    """Base of every pass config. Subclasses set the class variables."""

    name: ClassVar[str]
    version: ClassVar[int] = 1
    # Earlier versions whose saved recipes this build still reads; ``upgrade``
    # says what their options mean now.
    read_versions: ClassVar[tuple[int, ...]] = ()
    kind: ClassVar[str]  # "quantize", "prune", "low_rank"
    title: ClassVar[str]
    needs_calibration: ClassVar[bool] = False

    def __post_init__(self) -> None:
        for spec in self.options():
            value = check_option(self.name, spec, getattr(self, spec.name))
            object.__setattr__(self, spec.name, value)  # an int given for a float: stored as float

    @classmethod
    def options(cls) -> list[OptionSpec]:
        specs = []
        # Keyword-only options (a pass's scope) come after its own settings.
        for f in sorted(fields(cls), key=lambda f: f.kw_only):
            meta = f.metadata
            if "label" not in meta:
                continue
            default = f.default if f.default is not MISSING else None
            kind = "choice" if meta["choices"] else type(default).__name__
            specs.append(OptionSpec(f.name, kind, default, **meta))
        return specs

    @classmethod
    def upgrade(cls, version: int, options: dict) -> dict:
        """The options of a recipe saved by ``version`` (one of ``read_versions``)
        as this version reads them; OptionError if that version could not have
        written them."""
        return options

    def to_dict(self) -> dict:
        return {"pass": self.name, "version": self.version} | {
            spec.name: getattr(self, spec.name)
            for spec in self.options()
            if not (spec.name in SCOPE_OPTIONS and getattr(self, spec.name) == "")
        }  # an unscoped pass writes no scope: its JSON reads as before scopes existed

    def summary(self) -> str:
        """The pass and its options, as names show it; an unscoped pass
        names no scope, and a value a run records is named once it is
        (before the run, "steps_done=0" said a heal had taken no step)."""
        values = ", ".join(
            f"{s.name}={getattr(self, s.name)}"
            for s in self.options()
            if not (s.name in SCOPE_OPTIONS and getattr(self, s.name) == "")
            and not (s.recorded and getattr(self, s.name) == s.default)
        )
        return f"{self.name}({values})"

    def conflict(self) -> str | None:
        """Why these option values cannot be used together (one line), or
        None; the recipe's validation refuses the recipe with it."""
        return None

    def model_refusal(self, model_config) -> str | None:
        """Why these settings cannot apply to a model of ``model_config`` (one
        line, checked from the config alone so the window can grey Run), or
        None; ``apply`` refuses the same and whatever else it finds."""
        return None

    def module_refusal(self, model) -> str | None:
        """Why this pass cannot apply to ``model``'s modules (one line, from a
        glance at them: no weight is read, so the window greys Run with it),
        or None. ``apply`` refuses the same first."""
        return None

    def apply(self, model, context: PassContext):
        """Change ``model`` (already a private copy) and return it."""
        raise NotImplementedError

    def estimate(self, entries: list, model_config) -> list:
        """Sizes after this pass, from shapes alone (core.passes.size_estimate.Entry
        list in, list out); the default is no change in bytes."""
        return entries


@dataclass(frozen=True)
class ScopedConfig(PassConfig):
    """A pass over block linears that may be limited to some layers and parts
    (core.passes.scope); unlimited by default."""

    layers: str = option(
        "",
        label="layers",
        description="transformer layers, e.g. 0-3,28 (empty: every layer)",
        kw_only=True,
    )
    parts: str = option(
        "",
        label="parts",
        description="q, k, v, o, qkv, gate, up, down, gate_up, comma-separated (empty: all)",
        kw_only=True,
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        from core.passes.scope import Scope

        try:
            Scope.of(self)
        except ValueError as err:
            raise OptionError(f"{self.name}.{err}") from None

    @property
    def scope(self):
        from core.passes.scope import Scope

        return Scope.of(self)

    def scoped_linears(self, model) -> list:
        """The block linears this pass may change (refusing a scope the model lacks)."""
        from core.models.linear_layers import linears_to_change

        layers = getattr(getattr(model, "config", None), "num_hidden_layers", None)
        if isinstance(layers, int):  # before the search for linears says "none found"
            self.scope.check_layers(self.name, layers)
        linears = linears_to_change(self.name, model, self.scope.holds)
        return self.scope.select(self.name, linears, layers)

    def in_scope(self, entry) -> bool:
        """For the size estimate: is this inventory entry one the pass changes?"""
        return entry.is_linear and not entry.quantized and self.scope.holds(entry.name)


REGISTRY: dict[str, type[PassConfig]] = {}


def register(cls: type[PassConfig]) -> type[PassConfig]:
    if cls.name in REGISTRY:
        raise ValueError(f"pass {cls.name!r} registered twice")
    REGISTRY[cls.name] = cls
    return cls
