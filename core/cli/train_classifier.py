"""`workbench train-classifier`: fine-tune the bundled MiniLM encoder on
film-review sentiment (or prepare and cache the demo classifier)."""

from __future__ import annotations

from core.cli import args as cli_args
from core.cli.args import whole
from core.cli.common import note, progress
from core.cli.json_out import json_text


def add_parser(sub) -> None:
    clf = sub.add_parser(
        "train-classifier",
        help="fine-tune the bundled MiniLM encoder on film-review sentiment, score it on test",
    )
    clf.add_argument("--fast", action="store_true", help="the small CI variant (~15 s)")
    clf.add_argument("--train-examples", type=whole(0), default=None, help="default 4000; 0: all")
    clf.add_argument("--epochs", type=whole(1, 1000), default=None, help="default 1")
    clf.add_argument(
        "--out",
        default=None,
        help="save the trained classifier to this folder (default: with the standard settings, "
        "cache it as --model demo-classifier, or demo-classifier-fast with --fast)",
    )
    clf.add_argument("--threads", type=cli_args.thread_count, default=None, help="CPU threads")
    clf.add_argument("--json", action="store_true", help="print one JSON object")


def run(args) -> None:
    from dataclasses import asdict, replace
    from pathlib import Path

    from core.evaluate.sentiment_classifier import (
        FAST,
        ClassifierSettings,
        TrainStep,
        finetune_sentiment_classifier,
    )
    from core.runtime.device import set_threads

    set_threads(args.threads)
    settings = FAST if args.fast else ClassifierSettings()
    if args.train_examples is not None:
        if args.train_examples < 0:
            raise ValueError("--train-examples must be 0 (all) or more")
        settings = replace(settings, train_examples=args.train_examples or None)
    if args.epochs is not None:
        settings = replace(settings, epochs=args.epochs)
    out = Path(args.out) if args.out else None
    standard = settings in (FAST, ClassifierSettings())
    if out is None and not standard:  # said before minutes of training, not after
        note("not saved: settings other than the standard ones are kept only with --out DIR")
    if out is None and standard:  # prepare: train and cache as --model demo-classifier[-fast]
        from core.jobs.prepare_classifier import (
            ClassifierReady,
            PrepareClassifierRequest,
            prepare_classifier,
        )

        request = PrepareClassifierRequest(args.fast, force=True, load=False, threads=args.threads)
        job = prepare_classifier(request, progress)
    else:
        job = finetune_sentiment_classifier(settings, output_dir=out)
    result = ready = None
    for event in job:
        if isinstance(event, TrainStep) and (event.step % 10 == 0 or event.step == 1):
            note(f"step {event.step}/{event.steps_total}: loss {event.loss:.3f}")
        elif out is None and standard and isinstance(event, ClassifierReady):
            ready = event
            continue
        result = event
    if args.json:
        print(json_text(asdict(result)))
        return
    print(
        f"sentiment classifier {result.accuracy:.1%} ({result.correct}/{result.examples}, 95% CI "
        f"{result.ci95_low:.1%} to {result.ci95_high:.1%}); always-majority scores "
        f"{result.majority_rate:.1%}{'  NEAR OR BELOW CHANCE' if result.near_chance else ''}"
    )
    print(
        f"  training loss {result.first_loss:.3f} -> {result.last_loss:.3f} over {result.steps} "
        f"steps, {result.train_seconds:.0f} s; total {result.seconds:.0f} s"
    )
    print(f"  protocol {result.protocol}")
    if out:
        print(f"  saved to {out}")
    if ready is not None:
        print(f"  cached in {ready.folder}: use --model {ready.source}")
    if out is None and ready is None:
        print("  not saved (give --out DIR to keep the trained classifier)")
