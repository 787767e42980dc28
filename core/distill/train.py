"""The distillation job: train a student (from ``student.py``) to match its
teacher, yielding a DistillStep per optimiser step, a DistillEval every
``eval_every`` steps, a DistillCheckpoint every ``checkpoint_every`` steps
(atomic, ``checkpoint.py``), then a DistillResult.

Cancel is checked before each step and between the teacher's and the
student's passes; with a checkpoint directory the last completed step is
saved before ``Cancelled`` is raised, and ``resume=True`` continues it:
weights, AdamW state, step, training seconds and loss history are restored,
the data order and learning rate are functions of the step, so the resumed
run is the uninterrupted one.

Evaluations during training (DistillEval, and the DistillResult's
perplexity) are on dev-split windows: they watch training and may steer
choices; a student is reported by measuring it on the report split
afterwards (the window's run, ``workbench distill``'s summary,
``benchmarks/distill_recovery.py``).

Both models stay in eval mode (no dropout): the loss is then a function of
the weights and the batch alone, which is what makes resuming exact; the
default model has no dropout anyway. The teacher runs without gradients and
is never written.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import torch

from core.distill.checkpoint import SavedState, latest_checkpoint, load_checkpoint, save_checkpoint
from core.distill.data import TrainingWindows
from core.distill.events import (
    DistillCheckpoint,
    DistillEval,
    DistillResult,
    DistillResumed,
    DistillStep,
)
from core.distill.loss import distillation_loss
from core.distill.schedule import learning_rate, progress_fraction
from core.distill.settings import DistillSettings
from core.distill.student import teacher_layer_of
from core.errors import Cancelled, OutOfMemoryError, TrainingDivergedError
from core.models.loading import LoadedModel
from core.passes.recipe import CompressedModel
from core.progress import CancelToken, Progress, ProgressSink, ignore_progress


def distill(
    teacher: LoadedModel,
    student: CompressedModel,
    settings: DistillSettings | None = None,
    progress: ProgressSink = ignore_progress,
    cancel: CancelToken | None = None,
    checkpoint_dir: Path | None = None,
    resume: bool = True,
) -> Iterator[object]:
    """Train ``student.loaded.model`` in place; see the module docstring."""
    cancel = cancel or CancelToken()
    settings = settings or DistillSettings()
    model = student.loaded.model
    layer_map = teacher_layer_of(model, teacher.model) if settings.beta_hidden else None
    progress(Progress("Reading training text", None))
    data = TrainingWindows(
        teacher.tokenizer,
        settings.seq_len,
        settings.batch_size,
        settings.seed,
        settings.text_source,
        settings.max_train_tokens,
    )
    protocol, eval_windows = (None, None)
    if settings.eval_every is not None:
        protocol, eval_windows = eval_protocol(teacher.tokenizer, settings)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(True)
    optimizer = torch.optim.AdamW(
        list(model.parameters()),
        lr=settings.learning_rate,
        weight_decay=settings.weight_decay,
    )

    step, train_s, losses = 0, 0.0, []
    start_step = 0
    found = latest_checkpoint(checkpoint_dir) if checkpoint_dir and resume else None
    if found is not None:
        saved = load_checkpoint(found, model, optimizer)
        _check_matches(saved, settings, student, found)
        step, train_s, losses = saved.step, saved.train_seconds, list(saved.losses)
        start_step = step
        yield DistillResumed(step, str(found), tuple(losses))

    def save() -> DistillCheckpoint:
        state = SavedState(
            step, train_s, losses, settings.to_dict(), student.recipe.to_dict(), teacher.source
        )
        return DistillCheckpoint(
            step, str(save_checkpoint(checkpoint_dir, model, optimizer, state))
        )

    def stop() -> Iterator[DistillCheckpoint]:
        """Save the last completed step (if any is new), then raise Cancelled."""
        if checkpoint_dir is not None and step > start_step:
            yield save()
        raise Cancelled("distillation cancelled")

    def evaluate() -> Iterator[DistillEval]:
        try:
            yield _evaluate(model, teacher.tokenizer, step, eval_windows, protocol, cancel)
        except Cancelled:
            yield from stop()

    last_eval, checkpoint = None, None
    device = student.loaded.device
    while True:
        done = progress_fraction(step, train_s, settings.steps, settings.time_budget_s)
        if done >= 1.0:
            break
        if cancel.cancelled:
            yield from stop()
        lr = learning_rate(
            settings.learning_rate, step, done, settings.warmup_steps, settings.final_lr_fraction
        )
        for group in optimizer.param_groups:
            group["lr"] = lr
        ids = data.batch(step).to(device)
        began = time.perf_counter()
        try:
            parts, grad_norm = _train_step(
                teacher.model, model, optimizer, ids, settings, layer_map, cancel
            )
        except Cancelled:
            optimizer.zero_grad(set_to_none=True)
            continue  # the next pass round the loop saves and raises
        except (torch.OutOfMemoryError, MemoryError, RuntimeError) as err:
            if isinstance(err, RuntimeError) and "out of memory" not in str(err).lower():
                raise
            raise OutOfMemoryError(
                f"Out of memory distilling on {device} with batches of {settings.batch_size} x "
                f"{settings.seq_len} tokens: lower the batch size or the sequence length."
            ) from err
        train_s += time.perf_counter() - began
        step += 1
        losses.append(parts.total.item())
        if not math.isfinite(losses[-1]):  # every later step would train on NaN
            raise TrainingDivergedError(diverged_message(step, lr, settings))
        yield DistillStep(
            step=step,
            steps_total=settings.steps,
            loss=losses[-1],
            kd_loss=parts.kd,
            lm_loss=parts.lm,
            hidden_loss=parts.hidden,
            lr=lr,
            grad_norm=grad_norm,
            elapsed_s=train_s,
            tokens=step * settings.batch_size * settings.seq_len,
        )
        progress(
            Progress(
                f"Distilling: step {step}",
                progress_fraction(step, train_s, settings.steps, settings.time_budget_s),
            )
        )
        if settings.eval_every and step % settings.eval_every == 0:
            for last_eval in evaluate():
                yield last_eval
        if (
            checkpoint_dir is not None
            and settings.checkpoint_every
            and step % settings.checkpoint_every == 0
        ):
            checkpoint = save()
            yield checkpoint

    if settings.eval_every is not None and (last_eval is None or last_eval.step != step):
        for last_eval in evaluate():
            yield last_eval
    if checkpoint_dir is not None and (checkpoint is None or checkpoint.step != step):
        checkpoint = save()
        yield checkpoint
    by_steps = settings.steps is not None and step >= settings.steps
    yield DistillResult(
        step=step,
        steps_this_run=step - start_step,
        stopped="steps" if by_steps else "time",
        first_loss=_tenth_mean(losses, last=False),
        last_loss=_tenth_mean(losses, last=True),
        train_s=train_s,
        ppl=last_eval.ppl if last_eval else None,
        ppl_ci95=last_eval.ppl_ci95 if last_eval else None,
        checkpoint=checkpoint.path if checkpoint else None,
        settings=settings.describe(),
    )


def diverged_message(step: int, lr: float, settings: DistillSettings) -> str:
    return (
        f"distillation diverged at step {step}: the loss is not a finite number (learning "
        f"rate {lr:.3g}, temperature {settings.temperature:g}); lower the learning rate, or "
        "check the model's own perplexity. Checkpoints saved before this step are kept."
    )


def _train_step(teacher_model, model, optimizer, ids, settings, layer_map, cancel):
    hidden = bool(settings.beta_hidden)
    with torch.no_grad():  # not inference_mode: the loss saves the teacher's logits
        teacher_out = teacher_model(input_ids=ids, use_cache=False, output_hidden_states=hidden)
    cancel.raise_if_cancelled()
    student_out = model(input_ids=ids, use_cache=False, output_hidden_states=hidden)
    parts = distillation_loss(
        student_out,
        teacher_out,
        ids,
        settings.temperature,
        settings.alpha_lm,
        settings.beta_hidden,
        layer_map,
    )
    parts.total.backward()
    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), settings.grad_clip)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return parts, grad_norm.item()


def eval_protocol(tokenizer, settings: DistillSettings, split: str = "dev"):
    """The quick perplexity protocol cut to ``eval_windows`` windows, and its
    windows. Training is monitored on the dev split; a number to report
    (the student against its teacher) asks for ``split="report"``."""
    from core.evaluate.perplexity import QUICK_PROTOCOL, perplexity_windows

    protocol = replace(
        QUICK_PROTOCOL,
        context_tokens=settings.eval_context_tokens,
        stride=settings.eval_context_tokens // 2,
        quick_windows=settings.eval_windows,
        source=settings.text_source,
        split=split,
    )
    return protocol, perplexity_windows(tokenizer, protocol)


def _evaluate(model, tokenizer, step, windows, protocol, cancel) -> DistillEval:
    from core.evaluate.perplexity import compute_perplexity

    result = compute_perplexity(model, tokenizer, protocol, cancel, windows)
    return DistillEval(
        step, result.ppl, result.ci95_halfwidth, result.windows, result.seconds, result.protocol
    )


def _check_matches(saved: SavedState, settings: DistillSettings, student, folder) -> None:
    if saved.recipe != student.recipe.to_dict():
        raise ValueError(f"{folder} was trained for another student ({saved.recipe['passes']})")
    ours = settings.trajectory()
    theirs = DistillSettings(**saved.settings).trajectory()
    changed = sorted(k for k in ours if ours[k] != theirs[k])
    if changed:
        raise ValueError(
            f"{folder} was trained with other settings ({', '.join(changed)}); "
            "use the same ones or start a new run"
        )


def _tenth_mean(losses: list[float], last: bool) -> float | None:
    if not losses:
        return None
    k = max(1, len(losses) // 10)
    part = losses[-k:] if last else losses[:k]
    return sum(part) / len(part)
