"""`workbench distill`: build a student from the model (layers dropped and/or
MLP narrowed), distil it, print progress lines and a summary beside the
teacher's and the pruned student's perplexity."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from core.cli import args as cli_args
from core.cli.args import number, whole


def add_parser(sub, add_model_args) -> None:
    from core.distill.settings import DistillSettings

    d = DistillSettings()
    parser = sub.add_parser(
        "distill",
        help="train a smaller student (layers dropped / MLP narrowed) to match the model",
    )
    add_model_args(parser)
    positive = number(0.0, above_minimum=True)
    parser.add_argument("--drop-layers", type=whole(0), default=0, help="decoder layers removed")
    parser.add_argument(
        "--mlp-remove",
        type=number(0.0),
        default=0.0,
        help="fraction of MLP neurons removed (0-0.9)",
    )
    parser.add_argument(
        "--steps", type=whole(0), default=d.steps, help=f"step budget ({d.steps}; 0: none)"
    )
    parser.add_argument("--time-budget", type=positive, default=None, help="training seconds")
    parser.add_argument("--lr", type=positive, default=d.learning_rate)
    parser.add_argument("--temperature", type=positive, default=d.temperature)
    parser.add_argument("--alpha-lm", type=number(0.0), default=d.alpha_lm, help="LM loss weight")
    parser.add_argument(
        "--beta-hidden", type=number(0.0), default=d.beta_hidden, help="hidden-state MSE weight"
    )
    parser.add_argument("--batch-size", type=whole(1, 1024), default=d.batch_size)
    parser.add_argument("--seq-len", type=whole(2), default=d.seq_len)
    parser.add_argument("--warmup-steps", type=whole(0), default=d.warmup_steps)
    parser.add_argument("--seed", type=cli_args.seed, default=d.seed)
    parser.add_argument(
        "--text", default=d.text_source, choices=["news", "pydoc"], help="training/eval text"
    )
    parser.add_argument(
        "--eval-every",
        type=whole(0),
        default=d.eval_every,
        help="quick perplexity every N steps (0: only at the end)",
    )
    parser.add_argument("--eval-windows", type=whole(1, 100_000), default=d.eval_windows)
    parser.add_argument("--eval-context", type=whole(2), default=d.eval_context_tokens)
    parser.add_argument("--no-eval", action="store_true", help="no perplexity at all")
    parser.add_argument("--checkpoint-dir", type=Path, default=None)
    parser.add_argument(
        "--checkpoint-every", type=whole(0), default=d.checkpoint_every, help="0: only at the end"
    )
    parser.add_argument(
        "--resume", action="store_true", help="continue the latest checkpoint in --checkpoint-dir"
    )
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")


def _settings(args):
    from core.distill.settings import DistillSettings

    return DistillSettings(
        steps=args.steps or None,
        time_budget_s=args.time_budget,
        learning_rate=args.lr,
        temperature=args.temperature,
        alpha_lm=args.alpha_lm,
        beta_hidden=args.beta_hidden,
        batch_size=args.batch_size,
        seq_len=args.seq_len,
        warmup_steps=args.warmup_steps,
        seed=args.seed,
        text_source=args.text,
        eval_every=None if args.no_eval else args.eval_every,
        eval_windows=args.eval_windows,
        eval_context_tokens=args.eval_context,
        checkpoint_every=args.checkpoint_every,
    )


def _check_context(teacher, settings) -> None:
    """Refuse training or evaluation windows longer than the model's context,
    before calibrating and pruning."""
    from core.runtime.generation import context_length

    limit = context_length(teacher.model.config)
    if settings.seq_len > limit:
        raise ValueError(f"--seq-len {settings.seq_len} is over the model's {limit}-token context")
    if settings.eval_every is not None and settings.eval_context_tokens > limit:
        raise ValueError(
            f"--eval-context {settings.eval_context_tokens} is over the model's {limit}-token "
            "context"
        )


def _note(text: str) -> None:
    print(f"[{text}]", file=sys.stderr, flush=True)


def cmd_distill(args, load) -> None:
    from dataclasses import asdict

    from core.distill.events import (
        DistillCheckpoint,
        DistillEval,
        DistillResult,
        DistillResumed,
        DistillStep,
    )
    from core.distill.student import StudentShape, build_student
    from core.distill.train import distill, eval_protocol
    from core.evaluate.perplexity import compute_perplexity
    from core.passes.calibration import calibration_windows

    settings = _settings(args)
    recipe = StudentShape(args.drop_layers, args.mlp_remove).recipe()  # refuse before loading
    if args.resume and args.checkpoint_dir is None:
        raise ValueError("--resume needs --checkpoint-dir")
    teacher = load(args)
    _check_context(teacher, settings)
    if args.drop_layers >= teacher.description.layers:
        raise ValueError(
            f"--drop-layers {args.drop_layers} leaves no layer of {teacher.description.layers}"
        )
    calibration = calibration_windows(teacher.tokenizer, source=args.text)
    student = build_student(teacher, recipe, calibration, progress=lambda e: _note(e.stage))
    for note in student.notes:
        _note(note)
    report: dict = {"student": recipe.to_dict(), "settings": settings.to_dict()}
    if not args.no_eval:
        # reported on the report split; training itself is watched on dev windows
        protocol, windows = eval_protocol(teacher.tokenizer, settings, split="report")
        for name, model in (("teacher", teacher.model), ("pruned", student.loaded.model)):
            ppl = compute_perplexity(model, teacher.tokenizer, protocol, windows=windows)
            report[f"{name}_ppl"] = ppl.ppl
            _note(f"{name} perplexity {ppl.ppl:.3f}")
        report["protocol"] = ppl.protocol  # names the windows actually scored
    result = None
    every = max(1, (settings.steps or 100) // 20)
    events = distill(
        teacher, student, settings, checkpoint_dir=args.checkpoint_dir, resume=args.resume
    )
    for event in events:
        if isinstance(event, DistillStep) and (event.step % every == 0 or event.step == 1):
            _note(
                f"step {event.step}: loss {event.loss:.4f} (KD {event.kd_loss:.4f}), "
                f"lr {event.lr:.2e}, {event.elapsed_s:.0f} s"
            )
        elif isinstance(event, DistillEval):
            _note(f"step {event.step}: perplexity {event.ppl:.3f}")
        elif isinstance(event, DistillCheckpoint):
            _note(f"step {event.step}: saved {event.path}")
        elif isinstance(event, DistillResumed):
            _note(f"resumed {event.path} at step {event.step}")
        elif isinstance(event, DistillResult):
            result = event
    report |= {"result": asdict(result), "student_ppl": None}
    if not args.no_eval:
        student_ppl = compute_perplexity(
            student.loaded.model, teacher.tokenizer, protocol, windows=windows
        )
        report["student_ppl"] = student_ppl.ppl
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"student {student.recipe.name} of {teacher.source}")
    print(
        f"  {result.step} steps ({result.steps_this_run} this run) in {result.train_s:.0f} s, "
        f"stopped by {result.stopped}; loss {result.first_loss:.4f} -> {result.last_loss:.4f}"
    )
    if not args.no_eval:
        print(
            f"  perplexity: teacher {report['teacher_ppl']:.3f}, pruned {report['pruned_ppl']:.3f}"
            f", distilled {report['student_ppl']:.3f}"
        )
        print(f"  protocol {report['protocol']}")
    print(f"  {result.settings}")
    if result.checkpoint:
        print(f"  checkpoint {result.checkpoint}")
