"""`workbench eval`: perplexity with its interval (a bundled text's split or
the user's own file), fidelity to a reference, zero-shot sentiment; accuracy
for a classifier. Through the Evaluate job."""

from __future__ import annotations

from dataclasses import replace

from core.cli import args as cli_args
from core.cli import language_model_options
from core.cli.args import whole
from core.cli.common import add_model_args, add_runtime_args, load, note
from core.cli.json_out import json_text
from core.model_kinds import SEQUENCE_CLASSIFICATION


def add_parser(sub) -> None:
    ev = sub.add_parser(
        "eval", help="perplexity with a 95%% CI; fidelity to a reference; sentiment accuracy"
    )
    add_model_args(ev)
    size = ev.add_mutually_exclusive_group()
    size.add_argument(
        "--quick", dest="mode", action="store_const", const="quick", help="few windows (default)"
    )
    size.add_argument("--full", dest="mode", action="store_const", const="full", help="all windows")
    ev.set_defaults(mode="quick")
    ev.add_argument(
        "--reference",
        default=None,
        type=cli_args.model_source,
        metavar="MODEL",
        help="compare with this model (e.g. 'default', loaded in the device's default dtype): "
        "KL, top-1 agreement, perplexity ratio, generations",
    )
    ev.add_argument(
        "--sentiment", action="store_true", help="also zero-shot film-review sentiment accuracy"
    )
    ev.add_argument(
        "--context-tokens",
        type=whole(2),
        default=None,
        help="window length (default 512, or the model's context where it is shorter)",
    )
    ev.add_argument(
        "--stride",
        type=whole(1),
        default=None,
        help="tokens scored per window (default half the window)",
    )
    ev.add_argument(
        "--windows", type=whole(1, 100_000), default=None, help="override the window count"
    )
    ev.add_argument(
        "--text",
        default="news",
        metavar="TEXT",
        help="news or pydoc (bundled), or a UTF-8 text file, or JSONL with a string 'text' "
        "field per line (default news)",
    )
    ev.add_argument(
        "--split",
        default="report",
        choices=["report", "dev"],
        help="bundled text split: report (reported numbers, default) or dev (choosing defaults)",
    )
    ev.add_argument("--json", action="store_true", help="print one JSON object")
    add_runtime_args(ev)
    language_model_options.mark(ev, ("text", "windows", "context_tokens", "stride", "split"))


def _eval_protocol(args):
    """The protocol ``args`` ask for, the text file (if any) checked: before any model loads."""
    from core.data.own_text import check_fills_window, read_text_file
    from core.data.texts import SOURCES
    from core.evaluate.perplexity import PerplexityProtocol

    quick, full = 10, 200
    if args.windows is not None:
        quick = full = args.windows
    context = args.context_tokens or PerplexityProtocol.context_tokens
    if args.stride is not None and args.stride >= context:  # named as the options, not fields
        raise ValueError(
            f"--stride {args.stride:,}: must be less than the window ({context:,} tokens, "
            "--context-tokens): each window needs some context"
        )
    protocol = PerplexityProtocol(
        context_tokens=context,
        stride=args.stride or context // 2,
        quick_windows=quick,
        full_windows=full,
        mode=args.mode,
        split=args.split,
    )
    if args.text in SOURCES:
        return replace(protocol, source=args.text)
    if args.split != "report":
        raise ValueError("--split chooses a split of a bundled text; a file is scored whole")
    own = read_text_file(args.text)
    check_fills_window(own, protocol.context_tokens)
    return replace(protocol, text_file=own.path)


def run(args) -> None:
    from core.evaluate.fidelity import FidelityPartial
    from core.evaluate.perplexity import PerplexityPartial
    from core.evaluate.zero_shot import AccuracyPartial
    from core.jobs.evaluate import EvaluateRequest, EvaluationReport, evaluate

    protocol = _eval_protocol(args)  # refuse bad options before loading
    if args.sentiment and args.backend != "torch":
        raise ValueError("--sentiment runs on the torch backend only")
    loaded = load(args)
    language_model_options.refuse_for_classifier(
        args, loaded, "scored on the first film reviews of the sentiment test split"
    )
    same = args.reference == args.model and args.dtype == "auto" and args.backend == "torch"
    request = EvaluateRequest(
        loaded,
        args.model,
        protocol,
        args.reference,
        same,
        args.device,
        args.sentiment,
        fit_context=args.context_tokens is None,
    )
    report = None
    for event in evaluate(request, note_progress):
        if isinstance(event, PerplexityPartial):
            low, high = event.ci95_low, event.ci95_high
            ci = f" (95% CI {low:.2f} to {high:.2f})" if low is not None else ""
            note(f"window {event.windows_done}/{event.windows_total}: ppl {event.ppl:.2f}{ci}")
        elif isinstance(event, FidelityPartial):
            note(
                f"fidelity {event.windows_done}/{event.windows_total}: "
                f"KL {max(event.mean_kl, 0.0):.4f}, top-1 {event.top1_agreement:.1%}"
            )
        elif isinstance(event, AccuracyPartial) and (loaded.is_classifier or event.done % 25 == 0):
            what = "reviews" if loaded.is_classifier else "sentiment"
            note(f"{what} {event.done}/{event.total}: accuracy {event.accuracy:.1%}")
        elif isinstance(event, EvaluationReport):
            report = event.data
    if args.json:
        print(json_text(report))
    elif report["task"] == SEQUENCE_CLASSIFICATION:  # each kind's report has its own shape
        _print_classifier(args, loaded, report)
    else:
        _print_eval(loaded, report)


def note_progress(event) -> None:
    note(event.stage)


def _where(report: dict) -> str:
    on = report["measured_on"]
    weights = "/".join(on["weights"])
    return f"{weights} weights on {on['runtime']}, {on['device']}, {on['threads']} threads"


def _print_classifier(args, loaded, report: dict) -> None:
    a = report["accuracy"]
    flag = "  NEAR OR BELOW CHANCE" if a["near_chance"] else ""
    print(f"{loaded.description.architecture} from {args.model}, {_where(report)}")
    print(
        f"  accuracy {a['accuracy']:.1%} ({a['correct']}/{a['examples']}, 95% CI "
        f"{a['ci95_low']:.1%} to {a['ci95_high']:.1%}); always-majority scores "
        f"{a['majority_rate']:.1%}{flag}"
    )
    if a["agreement"] is not None:
        print(f"  agreement with {args.reference}: {a['agreement']:.1%} of the reviews")
    print(f"  protocol {a['protocol']}")


def _print_eval(loaded, report: dict) -> None:
    p = report["perplexity"]
    print(f"{loaded.description.architecture} from {report['model']}, {_where(report)}")
    if p["ci95_low"] is None:
        print(f"  perplexity {p['ppl']:.2f} (one window: no interval)")
    else:
        print(
            f"  perplexity {p['ppl']:.2f} (95% CI {p['ci95_low']:.2f} to {p['ci95_high']:.2f}), "
            f"{p['tokens_scored']} tokens in {p['windows']} windows, {p['seconds']:.1f} s"
        )
    print(f"  protocol {p['protocol']}")
    if "problem" in report:
        print(f"  BROKEN: {report['problem']}")
    if "fidelity" in report:
        f = report["fidelity"]
        kl_ci = f" +- {f['kl_ci95_halfwidth']:.4f}" if f["kl_ci95_halfwidth"] is not None else ""
        kl = max(f["mean_kl"], 0.0)  # KL is >= 0: a negative one is round-off ("-0.0000")
        print(
            f"  fidelity to {report['reference']}: KL {kl:.4f}{kl_ci} nats/token, "
            f"top-1 agreement {f['top1_agreement']:.1%}, {f['tokens']} tokens"
        )
        if f["ppl_ratio_ci95_low"] is not None:
            print(
                f"  perplexity ratio to {report['reference']} on the same tokens "
                f"{f['ppl_ratio']:.4f} (95% CI {f['ppl_ratio_ci95_low']:.4f} to "
                f"{f['ppl_ratio_ci95_high']:.4f})"
            )
        for g in report["generations"]:
            same = "identical" if g["identical"] else f"first {g['same_tokens']} tokens shared"
            print(f"  prompt {g['prompt']!r} ({same})")
            print(f"    reference: {g['reference']!r}")
            print(f"    this model: {g['candidate']!r}")
    if "sentiment" in report:
        s = report["sentiment"]
        flag = "  NEAR OR BELOW CHANCE" if s["near_chance"] else ""
        print(
            f"  sentiment {s['accuracy']:.1%} ({s['correct']}/{s['examples']}, 95% CI "
            f"{s['ci95_low']:.1%} to {s['ci95_high']:.1%}); always-majority scores "
            f"{s['majority_rate']:.1%}{flag}"
        )
        print(f"  protocol {s['protocol']}")
