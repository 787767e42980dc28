"""`workbench distill`: build a student from the model (layers dropped and/or
MLP narrowed), distil it, print progress lines and a summary beside the
teacher's and the pruned student's perplexity."""

from __future__ import annotations

from pathlib import Path

from core.cli import args as cli_args
from core.cli.args import number, whole
from core.cli.common import add_model_args, load, note
from core.cli.json_out import json_text


def add_parser(sub) -> None:
    from core.distill.settings import (
        MAX_LEARNING_RATE,
        MAX_LOSS_WEIGHT,
        TEMPERATURE_RANGE,
        DistillSettings,
    )

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
    low, high = TEMPERATURE_RANGE
    parser.add_argument(
        "--lr", type=number(0.0, MAX_LEARNING_RATE, above_minimum=True), default=d.learning_rate
    )
    parser.add_argument("--temperature", type=number(low, high), default=d.temperature)
    parser.add_argument(
        "--alpha-lm", type=number(0.0, MAX_LOSS_WEIGHT), default=d.alpha_lm, help="LM loss weight"
    )
    parser.add_argument(
        "--beta-hidden",
        type=number(0.0, MAX_LOSS_WEIGHT),
        default=d.beta_hidden,
        help="hidden-state MSE weight",
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
    parser.add_argument(
        "--eval-context",
        type=whole(2),
        default=None,
        help=f"evaluation window (default {d.eval_context_tokens}, or the model's context "
        "where it is shorter)",
    )
    parser.add_argument("--no-eval", action="store_true", help="no perplexity at all")
    parser.add_argument("--checkpoint-dir", type=Path, default=None)
    parser.add_argument(
        "--checkpoint-every", type=whole(0), default=d.checkpoint_every, help="0: only at the end"
    )
    parser.add_argument(
        "--resume", action="store_true", help="continue the latest checkpoint in --checkpoint-dir"
    )
    parser.add_argument(
        "--no-save",
        action="store_true",
        help="do not measure the student or store it as a run (by default it joins the "
        "results the window shows, its trained weights kept with their sha256)",
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
        eval_context_tokens=args.eval_context or DistillSettings.eval_context_tokens,
        checkpoint_every=args.checkpoint_every,
    )


def run(args) -> None:
    from dataclasses import asdict, replace

    from core.distill.events import (
        DistillCheckpoint,
        DistillEval,
        DistillResult,
        DistillResumed,
        DistillStep,
    )
    from core.distill.student import StudentShape
    from core.evaluate.perplexity import QUICK_PROTOCOL
    from core.jobs.distill import (
        DistillBaseline,
        DistillRequest,
        StudentNotes,
        StudentScore,
        distill_student,
    )
    from core.jobs.experiment import QUICK_BENCH, ExperimentSettings
    from core.results.store import ResultsStore, RunRecord

    settings = _settings(args)
    shape = StudentShape(args.drop_layers, args.mlp_remove)
    recipe = shape.recipe()  # refuse before loading
    if args.resume and args.checkpoint_dir is None:
        raise ValueError("--resume needs --checkpoint-dir")
    if args.resume:  # asked for: a folder without one (a mistyped path) trained from step 0
        from core.distill.checkpoint import latest_checkpoint

        if not Path(args.checkpoint_dir).is_dir() or latest_checkpoint(args.checkpoint_dir) is None:
            raise ValueError(
                f"--resume: {args.checkpoint_dir} holds no checkpoint to resume; "
                "leave --resume out to start from step 0"
            )
    store = ResultsStore()
    if not args.no_save:  # the student's run is stored: refused now, not after training
        store.check_writable()
    teacher = load(args, "torch")
    # The student is measured like any run (the window's quick protocol, cut to
    # the evaluation windows asked for here) and stored, so it joins the table.
    measured = replace(
        QUICK_PROTOCOL,
        context_tokens=settings.eval_context_tokens,
        stride=settings.eval_context_tokens // 2,
        quick_windows=settings.eval_windows,
        source=settings.text_source,
    )
    experiment = ExperimentSettings(
        bench=QUICK_BENCH,
        evaluate=not args.no_eval,
        perplexity=measured,
        text_source=settings.text_source,
    )
    request = DistillRequest(
        teacher,
        shape,
        store.path.parent,
        settings,
        experiment,
        args.checkpoint_dir,
        args.resume,
        baseline=not args.no_eval,
        measure=not args.no_save,
        threads=args.threads,
        fit_eval_context=args.eval_context is None,  # an asked window is checked, not cut
    )
    report: dict = {"student": recipe.to_dict(), "settings": settings.to_dict()}
    result = record = None
    every = max(1, (settings.steps or 100) // 20)
    for event in distill_student(request, lambda e: note(e.stage)):
        if isinstance(event, StudentNotes):
            for line in event.notes:
                note(line)
        elif isinstance(event, DistillBaseline):
            # teacher_ppl, pruned_ppl and student_ppl: on the report split ("protocol")
            report |= {
                "teacher_ppl": event.teacher_ppl,
                "pruned_ppl": event.pruned_ppl,
                "protocol": event.protocol,
            }
            note(f"teacher perplexity {event.teacher_ppl:.3f}")
            note(f"pruned perplexity {event.pruned_ppl:.3f}")
        elif isinstance(event, DistillStep) and (event.step % every == 0 or event.step == 1):
            note(
                f"step {event.step}: loss {event.loss:.4f} (KD {event.kd_loss:.4f}), "
                f"lr {event.lr:.2e}, {event.elapsed_s:.0f} s"
            )
        elif isinstance(event, DistillEval):
            note(f"step {event.step}: perplexity {event.ppl:.3f}")
            report["monitor_protocol"] = event.protocol  # result.ppl's: dev windows
        elif isinstance(event, DistillCheckpoint):
            note(f"step {event.step}: saved {event.path}")
        elif isinstance(event, DistillResumed):
            note(f"resumed {event.path} at step {event.step}")
        elif isinstance(event, DistillResult):
            result = event
        elif isinstance(event, StudentScore):
            report |= {"student_ppl": event.ppl, "protocol": event.protocol}
        elif isinstance(event, RunRecord):
            record = store.append(event)
    report |= {"result": asdict(result)}
    report.setdefault("student_ppl", None)
    if record is not None:
        report["run_id"] = record.run_id
    report["broken"] = _broken(report, record, recipe, teacher)
    if args.json:
        print(json_text(report))
        return
    print(f"student {recipe.name} of {teacher.source}")
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
    if report["broken"]:
        print(f"  BROKEN: {report['broken']}")
    if result.checkpoint:
        print(f"  checkpoint {result.checkpoint}")
    if record is not None:
        print(f"  stored as run {record.run_id} (the window's table shows it)")


def _broken(report: dict, record, recipe, teacher) -> str:
    """The stored run's verdict; with nothing stored (``--no-save``), the
    student's perplexity against the teacher's on the same windows."""
    from core.evaluate.health import broken_cause

    if record is not None:
        return record.broken
    student, teacher_ppl = report.get("student_ppl"), report.get("teacher_ppl")
    if student is None or not teacher_ppl:
        return ""
    return broken_cause(
        None, student / teacher_ppl, recipe.to_dict(), layers=teacher.description.layers
    )
