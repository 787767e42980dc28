"""The training behind the heal pass (core/passes/heal.py): a short
distillation of the pruned copy from the original, with the Distil job's
loss and learning-rate curve (core/distill), on the calibration split only.

The job that builds a recipe (``CausalLMTask.build``) hands
``healer_for(original, source)`` to ``apply_recipe``, which puts it on the
pass context; the pass calls it with the pruned model. The teacher is the
original already loaded, run without gradients and never written.

Exactly reproducible: batch k is a pure function of (seed, k) over a fixed
list of calibration windows, the learning rate a pure function of (step,
planned steps), both models stay in eval mode (no dropout), and the thread
count is recorded and used again (CPU kernels may sum in another order with
other thread counts: measured on the tiny GPT-2). A first run plans its
steps from the timed warm-up steps and the time budget; the steps it takes
and plans are recorded in the run's recipe, and a rebuild replays them. The
built weights' sha256 goes in the run's artifact, and Export refuses a
rebuild whose weights differ.
"""

from __future__ import annotations

import hashlib
import math
import time

import torch

from core.distill.loss import distillation_loss
from core.distill.schedule import learning_rate
from core.errors import ProvenanceError
from core.passes.heal import (
    BATCH_SIZE,
    FINAL_LR_FRACTION,
    GRAD_CLIP,
    SEQ_LEN,
    TEMPERATURE,
    HealConfig,
    HealOutcome,
)
from core.progress import Progress

_clock = time.perf_counter  # a test may replace it to make the budget deterministic


class HealWindows:
    """Every ``seq_len``-token window of the calibration split (documents cut
    as calibration cuts them, BOS where the tokenizer adds one), visited in
    one seeded order; epochs wrap around in the same order."""

    def __init__(self, tokenizer, source: str, seq_len: int, seed: int) -> None:
        from core.passes.calibration import calibration_windows

        windows = calibration_windows(tokenizer, 1_000_000, seq_len, source)  # all of them
        self.windows = torch.stack(windows)
        self.batch_size = min(BATCH_SIZE, len(windows))
        generator = torch.Generator().manual_seed(seed)
        self.order = torch.randperm(len(windows), generator=generator)

    def batch(self, step: int) -> torch.Tensor:
        per_epoch = len(self.order) // self.batch_size
        first = (step % per_epoch) * self.batch_size
        return self.windows[self.order[first : first + self.batch_size]]


def healer_for(original, source: str):
    """The heal callable for ``apply_recipe``: distils from ``original``
    (a LoadedModel) on ``source``'s calibration split."""

    def heal(student, config: HealConfig, context) -> HealOutcome:
        threads = torch.get_num_threads()
        if config.replay:  # the recorded count: the same sums in the same order
            torch.set_num_threads(config.threads)
        try:
            return distil_to_heal(
                original.model, original.tokenizer, student, config, context, source
            )
        finally:
            torch.set_num_threads(threads)

    return heal


def distil_to_heal(teacher, tokenizer, student, config: HealConfig, context, source: str):
    """Train ``student`` in place to match ``teacher``; see the module docstring."""
    from core.runtime.generation import context_length

    context.progress(Progress("Healing: reading calibration text", None))
    seq_len = min(SEQ_LEN, context_length(student.config))
    data = HealWindows(tokenizer, source, seq_len, config.seed)
    device = next(student.parameters()).device
    teacher.eval()
    student.eval()  # no dropout: the loss is a function of weights and batch alone
    params = list(student.parameters())
    trainable = [p.requires_grad for p in params]
    for p in params:
        p.requires_grad_(True)
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=0.0)
    warmup = config.warmup_steps
    # Replay: the recorded plan; first run: the step budget alone, or (with a
    # time budget) a plan made once the warm-up steps are timed.
    planned = config.planned_steps if config.replay else None
    if planned is None and not config.seconds:
        planned = config.max_steps
    last_step = config.steps_done if config.replay else config.max_steps
    stopped = "replayed" if config.replay else "steps"
    step, train_s, losses, times = 0, 0.0, [], []
    try:
        while step < last_step and (planned is None or step < planned):
            context.cancel.raise_if_cancelled()
            if (
                not config.replay
                and config.seconds
                and times
                and train_s + times[-1] > config.seconds
            ):
                stopped = "time"  # the next step would end past the budget
                break
            done = max(0, step - warmup) / max(1, (planned or 0) - warmup)
            lr = learning_rate(config.lr, step, min(1.0, done), warmup, FINAL_LR_FRACTION)
            for group in optimizer.param_groups:
                group["lr"] = lr
            ids = data.batch(step).to(device)
            began = _clock()
            loss = _train_step(teacher, student, optimizer, ids, context.cancel)
            times.append(_clock() - began)
            train_s += times[-1]
            losses.append(loss)
            step += 1
            if planned is None and step == warmup:
                planned = _plan(config, step, train_s, times)
            total = planned or config.max_steps
            context.progress(
                Progress(
                    f"Healing: step {step} of {total}, distillation loss {loss:.4g}",
                    _fraction(step, total, train_s, config),
                )
            )
    finally:
        optimizer.zero_grad(set_to_none=True)
        for p, flag in zip(params, trainable, strict=True):
            p.requires_grad_(flag)
    return HealOutcome(
        steps_done=step,
        planned_steps=max(planned or 0, step),  # stopped inside the warm-up: the steps taken
        stopped=stopped,
        train_s=train_s,
        losses=tuple(losses),
        threads=torch.get_num_threads(),
    )


def _train_step(teacher, student, optimizer, ids, cancel) -> float:
    with torch.no_grad():
        teacher_out = teacher(input_ids=ids, use_cache=False)
    cancel.raise_if_cancelled()
    student_out = student(input_ids=ids, use_cache=False)
    parts = distillation_loss(student_out, teacher_out, ids, TEMPERATURE)
    parts.total.backward()
    torch.nn.utils.clip_grad_norm_(student.parameters(), GRAD_CLIP)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return parts.kd


def _plan(config: HealConfig, step: int, train_s: float, times: list[float]) -> int:
    """Steps that fit the time budget, from the warm-up steps' times (the
    first step, which pays one-off costs, counts only if it is the only one)."""
    per_step = sum(times[1:]) / len(times[1:]) if len(times) > 1 else times[0]
    fits = step + math.floor(max(0.0, config.seconds - train_s) / max(per_step, 1e-9))
    return max(step, min(config.max_steps, fits))


def _fraction(step: int, total: int, train_s: float, config: HealConfig) -> float:
    parts = [step / total]
    if config.seconds and not config.replay:
        parts.append(train_s / config.seconds)
    return min(1.0, max(parts))


def weights_digest(model) -> str:
    """sha256 over every stored tensor's name, dtype, shape and bytes."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def record_weights(compressed) -> None:
    """Put the healed configuration's weights digest in its artifact."""
    heal = compressed.artifact.get("heal")
    if heal is not None:
        heal["weights_sha256"] = weights_digest(compressed.loaded.model)


def check_rebuilt(compressed, artifact: dict, name: str) -> None:
    """Refuse a rebuilt healed configuration whose weights are not the ones
    the run measured (``artifact`` is the run's)."""
    expected = (artifact.get("heal") or {}).get("weights_sha256")
    if not expected:
        return
    found = weights_digest(compressed.loaded.model)
    if found != expected:
        raise ProvenanceError(
            f"rebuilding {name} gave other weights (sha256 {found[:12]}, measured "
            f"{expected[:12]}): the heal's training differs on this machine or library "
            "version; measure it again to export it"
        )
