"""What every model kind answers: how a configuration of it is built,
timed and scored, and which metrics its record carries."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

from core.progress import CancelToken, ProgressSink


class Task(Protocol):
    name: str  # core.results.metrics: CAUSAL_LM or SEQUENCE_CLASSIFICATION
    metrics: type  # the RunRecord.metrics type it fills
    kind: str  # how messages name it ("classifier")
    compared_by: str  # what comparing it with a reference measures ("fidelity")

    def check(self, original, settings) -> None:
        """Refuse, before any work, protocol settings this model cannot take."""

    def build(self, original, recipe, settings, progress: ProgressSink, cancel: CancelToken):
        """``recipe`` applied to a copy of ``original`` (a CompressedModel),
        calibrated on this kind's calibration data when a pass needs it."""

    def measure(
        self,
        original,
        candidate,
        recipe,
        notes: list[str],
        settings,
        progress: ProgressSink,
        cancel: CancelToken,
        runtime: str,
        label: str,
        artifact: dict,
    ) -> Iterator[object]:
        """Benchmark and score ``candidate`` against ``original``: its events,
        then one RunRecord."""

    def bench(self, request, cancel: CancelToken) -> Iterator[object]:
        """This kind's speed protocol on ``request.loaded`` (a BenchRequest)."""

    def evaluate(self, request, progress: ProgressSink, cancel: CancelToken) -> Iterator[object]:
        """This kind's quality protocol (an EvaluateRequest): events, then an
        EvaluationReport."""
