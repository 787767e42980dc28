"""A model's kind as one object. The kind is read once, at load, from the
architecture (``core.models.description``: ``...ForSequenceClassification``
or a causal LM); ``task_for`` hands back the Task that knows how to build,
benchmark and evaluate that kind and which metrics its RunRecord carries
(``core.results.metrics``). Jobs ask it instead of branching on the kind."""

from __future__ import annotations

from core.jobs.tasks.base import Task


def task_for(loaded) -> Task:
    """The Task of a LoadedModel (its kind was resolved when it loaded)."""
    from core.jobs.tasks.causal_lm import CAUSAL_LM_TASK
    from core.jobs.tasks.classifier import CLASSIFIER_TASK

    tasks = {task.name: task for task in (CAUSAL_LM_TASK, CLASSIFIER_TASK)}
    return tasks[loaded.task]


__all__ = ["Task", "task_for"]
