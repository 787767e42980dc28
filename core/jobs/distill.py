"""The Distil job: build a student from the loaded model (layers dropped
and/or MLP neurons removed), train it by knowledge distillation, keep its
trained weights (with their sha256) beside the results store, then measure
it like any configuration. The window and ``workbench distill`` both run
this, so a student distilled from the command line joins the window's table.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from core.jobs.run import _default_settings, stamp
from core.progress import CancelToken, Progress, ProgressSink, ignore_progress


def _default_distill():
    from core.distill.settings import DistillSettings

    return DistillSettings()


@dataclass(frozen=True)
class DistillRequest:
    teacher: object  # core.models.loading.LoadedModel
    shape: object  # core.distill.student.StudentShape
    store_dir: Path  # the results store's folder: trained weights are kept under it
    settings: object = field(default_factory=_default_distill)  # DistillSettings
    experiment: object = field(default_factory=_default_settings)  # ExperimentSettings
    checkpoint_dir: Path | None = None  # None: <store_dir>/distill/<teacher>-<student>
    resume: bool = True
    baseline: bool = False  # also score the teacher and the untrained student first
    measure: bool = True  # benchmark and evaluate the trained student (a RunRecord)
    threads: int | None = None
    # The evaluation window is the default, not the user's: cut it to a
    # teacher whose context is shorter (and say so) instead of refusing.
    fit_eval_context: bool = True


@dataclass(frozen=True)
class DistillBaseline:
    """Teacher and untrained student on the protocol that monitors training."""

    teacher_ppl: float
    pruned_ppl: float
    protocol: str


def checkpoint_folder(request: DistillRequest) -> Path:
    from core.export.naming import folder_name

    if request.checkpoint_dir is not None:
        return Path(request.checkpoint_dir)
    name = folder_name(f"{request.teacher.source}-{request.shape.recipe().name}")
    return Path(request.store_dir) / "distill" / name


def distill_student(
    request: DistillRequest,
    progress: ProgressSink = ignore_progress,
    cancel: CancelToken | None = None,
) -> Iterator[object]:
    """Yield the student's notes, distillation events, then (with ``measure``)
    the measurement events and the student's RunRecord."""
    from core.distill.checkpoint import check_checkpoint_dir, writing_checkpoints
    from core.jobs.loaded_graph import DISTILLATION, require_pytorch
    from core.models.loading import require_causal_lm

    cancel = cancel or CancelToken()
    teacher = request.teacher
    require_causal_lm(teacher, "Distillation")
    require_pytorch(teacher, DISTILLATION)
    recipe = request.shape.recipe()  # refuses an empty shape before any work
    folder = checkpoint_folder(request)
    check_checkpoint_dir(folder, teacher.folder)  # the user's files: before any work
    with writing_checkpoints(folder):  # one run per checkpoint folder, refused before any work
        yield from _distill_held(request, folder, recipe, progress, cancel)


def _distill_held(request: DistillRequest, folder: Path, recipe, progress, cancel):
    """The distillation, its checkpoint folder held (``distill_student``)."""
    from core.distill.events import DistillResult
    from core.distill.student import build_student
    from core.distill.train import distill, eval_protocol
    from core.evaluate.perplexity import compute_perplexity
    from core.jobs.experiment import measure_configuration, read_calibration
    from core.jobs.provenance import new_run_id, save_trained
    from core.results.store import RunRecord
    from core.runtime.device import set_threads

    teacher, settings = request.teacher, request.settings
    if request.fit_eval_context:
        settings = _eval_context_fitted(teacher, settings, progress)
    check_fits(teacher, request.shape, settings)
    set_threads(request.threads)
    experiment = request.experiment
    calibration = read_calibration(teacher, experiment, progress)
    student = build_student(teacher, recipe, calibration, progress, cancel)
    yield StudentNotes(tuple(student.notes))
    if request.baseline:
        # reported on the report split; training itself is watched on dev windows
        protocol, windows = eval_protocol(teacher.tokenizer, settings, split="report")
        scores = [
            compute_perplexity(model, teacher.tokenizer, protocol, windows=windows).ppl
            for model in (teacher.model, student.loaded.model)
        ]
        yield DistillBaseline(scores[0], scores[1], protocol.describe())
        baseline = (protocol, windows)
    result = None
    for event in distill(teacher, student, settings, progress, cancel, folder, request.resume):
        result = event if isinstance(event, DistillResult) else result
        yield event
    if request.baseline:
        protocol, windows = baseline
        scored = compute_perplexity(
            student.loaded.model, teacher.tokenizer, protocol, windows=windows
        )
        yield StudentScore(scored.ppl, scored.protocol)
    if not request.measure:
        return
    run_id = new_run_id()
    progress(Progress("Keeping the trained weights", None))
    trained = save_trained(
        student.loaded, teacher.model.config, request.store_dir, run_id, cancel.raise_if_cancelled
    )
    artifact = {
        **trained,
        "recipe": recipe.to_dict(),
        "distill": settings.to_dict(),
        "steps": result.step,
    }
    resumed = result.step - result.steps_this_run
    so_far = f", {resumed} of them before a resume" if resumed else ""
    note = f"distilled {result.step} steps{so_far} ({result.settings}); checkpoint {folder}"
    for event in measure_configuration(
        teacher,
        student.loaded,
        recipe,
        [*student.notes, note],
        experiment,
        progress,
        cancel,
        label=f"{recipe.name} + distilled ({result.step} steps)",
    ):
        if isinstance(event, RunRecord):
            event = stamp(event, run_id, artifact)
        yield event


@dataclass(frozen=True)
class StudentScore:
    """The trained student on the baseline's protocol (the report split)."""

    ppl: float
    protocol: str  # names the windows actually scored


def _eval_context_fitted(teacher, settings, progress):
    """``settings`` with its monitoring windows no longer than the teacher's
    context (the 512-token default would refuse a model trained for 256),
    saying so when they were cut."""
    from dataclasses import replace

    from core.runtime.generation import context_length

    limit = context_length(teacher.model.config)
    if settings.eval_context_tokens <= limit:
        return settings
    progress(
        Progress(
            f"evaluation windows of {limit} tokens, not {settings.eval_context_tokens}: "
            f"the model's context is {limit} tokens",
            None,
        )
    )
    return replace(settings, eval_context_tokens=limit)


def check_fits(teacher, shape, settings) -> None:
    """Refuse, before calibrating and pruning, a student with no layer left or
    training and evaluation windows longer than the model's context."""
    from core.runtime.generation import context_length

    layers = teacher.description.layers
    if layers is not None and shape.drop_layers >= layers:
        raise ValueError(f"dropping {shape.drop_layers} layers leaves none of the model's {layers}")
    limit = context_length(teacher.model.config)
    if settings.seq_len > limit:
        raise ValueError(f"--seq-len {settings.seq_len} is over the model's {limit}-token context")
    if settings.eval_every is not None and settings.eval_context_tokens > limit:
        raise ValueError(
            f"--eval-context {settings.eval_context_tokens} is over the model's {limit}-token "
            "context"
        )


@dataclass(frozen=True)
class StudentNotes:
    """What building the student decided (layers chosen, neurons kept)."""

    notes: tuple[str, ...]
