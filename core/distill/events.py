"""What the distillation job yields: plain frozen dataclasses, one per
thing a chart or a log line shows."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DistillResumed:
    """The run continues a checkpoint; ``losses`` is the history so far
    (one per step), so a chart can redraw it."""

    step: int
    path: str
    losses: tuple[float, ...]


@dataclass(frozen=True)
class DistillStep:
    step: int  # 1-based: optimiser steps done
    steps_total: int | None  # the step budget, if any
    loss: float  # the total that was minimised
    kd_loss: float  # T^2 * KL(teacher_T || student_T), per token
    lm_loss: float | None  # next-token cross-entropy, when alpha > 0
    hidden_loss: float | None  # hidden-state MSE, when beta > 0
    lr: float
    grad_norm: float  # before clipping
    elapsed_s: float  # training seconds (evaluation and saving excluded)
    tokens: int  # training tokens seen so far


@dataclass(frozen=True)
class DistillEval:
    step: int
    ppl: float
    ppl_ci95: float | None  # half-width of the 95% interval
    windows: int
    seconds: float
    protocol: str


@dataclass(frozen=True)
class DistillCheckpoint:
    step: int
    path: str


@dataclass(frozen=True)
class DistillResult:
    step: int  # optimiser steps done in total (resumed ones included)
    steps_this_run: int
    stopped: str  # "steps" or "time"
    first_loss: float | None  # mean of the first 10% of all steps (at least 1)
    last_loss: float | None  # mean of the last 10%
    train_s: float  # training seconds in total (resumed ones included)
    ppl: float | None  # the last quick perplexity, if evaluated
    ppl_ci95: float | None
    checkpoint: str | None
    settings: str  # DistillSettings.describe()


# Every event the distillation job yields, for dispatching on their type.
DISTILL_EVENTS = (DistillResumed, DistillStep, DistillEval, DistillCheckpoint, DistillResult)
