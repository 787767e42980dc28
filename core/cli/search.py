"""`workbench search`: the best configuration under limits, within a time
budget (the Search job). A line per event on stderr as it happens; at the
end the best found, or with --json the whole account (every candidate:
estimate, proxy, why it was dropped or what it measured). Each new
measurement is stored like a Run, so the window's table shows it and the
next search reuses it."""

from __future__ import annotations

import json

from core.cli import language_model_options
from core.cli.args import number, whole
from core.cli.common import add_model_args, load, note, progress
from core.cli.json_out import json_text
from core.message_text import shown
from core.runtime.registry import RUNTIMES


def add_parser(sub) -> None:
    parser = sub.add_parser(
        "search",
        help="search for the best configuration under size, speed and quality limits",
    )
    add_model_args(parser)
    positive = number(0.0, above_minimum=True)
    limits = parser.add_argument_group("limits (each optional)")
    limits.add_argument("--max-bytes", type=whole(1, 2**62), help="largest size, bytes")
    limits.add_argument(
        "--max-bytes-ratio", type=positive, help="largest size as a fraction of the original's"
    )
    limits.add_argument("--max-decode-ms", type=positive, help="slowest decode, ms per token")
    limits.add_argument("--min-tokens-per-s", type=positive, help="fewest decoded tokens/s")
    limits.add_argument("--max-kl", type=positive, help="largest KL to the original, nats/token")
    limits.add_argument(
        "--max-ppl-increase", type=number(0.0), help="largest perplexity increase, percent"
    )
    limits.add_argument(
        "--min-accuracy", type=number(0.0, 1.0, above_minimum=True), help="a classifier's, 0-1"
    )
    parser.add_argument(
        "--objective",
        default=None,
        choices=["ppl", "kl", "bytes", "speed", "accuracy"],
        help="what the best optimises: perplexity increase (a language model's default), KL, "
        "size, decode speed, accuracy (a classifier's default)",
    )
    parser.add_argument(
        "--budget-s", type=positive, default=1800.0, help="time budget, seconds (default 1800)"
    )
    parser.add_argument(
        "--backend",
        default="torch",
        choices=list(RUNTIMES),
        help="where measured candidates run (their speed is timed there)",
    )
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "--ray",
        metavar="ADDRESS",
        help="score proxies as Ray tasks: 'auto' (the cluster this machine joined) or an "
        "address such as ray://head:10001",
    )
    where.add_argument(
        "--workers",
        type=whole(1, 256),
        help="score proxies in N local processes (default: 1 below 8 CPUs, else CPUs/4)",
    )
    space = parser.add_argument_group("candidates")
    space.add_argument(
        "--families", default="uniform,mixed,pruning", help="uniform, mixed, pruning (default all)"
    )
    space.add_argument(
        "--int4-methods",
        default="awq,gptq_act_order,gptq,rtn",
        help="int4 methods tried, in the order siblings are measured",
    )
    space.add_argument("--int4-groups", default="128,64", help="int4 group sizes tried")
    space.add_argument("--no-int8-head", action="store_true", help="never add the int8 head")
    protocol = parser.add_argument_group("protocols")
    protocol.add_argument(
        "--proxy-windows", type=whole(1, 1000), default=2, help="dev windows a proxy reads"
    )
    protocol.add_argument(
        "--text", default=None, choices=["news", "pydoc"], help="evaluation text (default news)"
    )
    protocol.add_argument(
        "--eval-context", type=whole(4, 1_000_000), default=512, help="perplexity window length"
    )
    protocol.add_argument(
        "--eval-windows", type=whole(1, 100_000), default=10, help="report-split windows"
    )
    protocol.add_argument("--calibration-windows", type=whole(1, 100_000), default=16)
    protocol.add_argument("--calibration-length", type=whole(2, 1_000_000), default=256)
    parser.add_argument(
        "--no-save",
        action="store_true",
        help="do not store measured runs (by default they join the results the window shows); "
        "proxy scores and sensitivity cells are still cached beside the store",
    )
    parser.add_argument("--json", action="store_true", help="print the whole account as JSON")
    language_model_options.mark(
        parser,
        ("text", "eval_context", "eval_windows", "calibration_windows", "calibration_length"),
    )


def _words(text: str, what: str) -> tuple[str, ...]:
    words = tuple(w.strip() for w in text.split(",") if w.strip())
    if not words:
        raise ValueError(f"--{what}: name at least one")
    return words


def _groups(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(w, 10) for w in _words(text, "int4-groups"))
    except ValueError:
        raise ValueError(f"--int4-groups: whole numbers (32, 64, 128), got {shown(text)}") from None


def build_inputs(args):
    """Limits, search space and settings from ``args``, refused in one line
    before any model loads."""
    from dataclasses import replace

    from core.evaluate.perplexity import QUICK_PROTOCOL
    from core.jobs.experiment import ExperimentSettings
    from core.jobs.search import check_inputs
    from core.search.candidates import SearchSpace
    from core.search.limits import Limits

    limits = Limits(
        max_bytes=args.max_bytes,
        max_bytes_ratio=args.max_bytes_ratio,
        max_decode_ms=args.max_decode_ms,
        min_tokens_per_s=args.min_tokens_per_s,
        max_kl=args.max_kl,
        max_ppl_increase_pct=args.max_ppl_increase,
        min_accuracy=args.min_accuracy,
    )
    check_inputs(limits, args.objective or "ppl", args.budget_s, args.proxy_windows)
    space = SearchSpace(
        families=_words(args.families, "families"),
        int4_groups=_groups(args.int4_groups),
        int4_methods=_words(args.int4_methods, "int4-methods"),
        int8_head=not args.no_int8_head,
    )
    if args.ray is not None:
        from core.search.executors import check_reachable

        if not args.ray.strip():
            raise ValueError("--ray: give 'auto' or a cluster address")
        check_reachable(args.ray)  # nothing answers there: refused before the model loads
    context = args.eval_context
    protocol = replace(
        QUICK_PROTOCOL, context_tokens=context, stride=context // 2, quick_windows=args.eval_windows
    )
    settings = ExperimentSettings(
        perplexity=protocol,
        calibration_windows=args.calibration_windows,
        calibration_length=args.calibration_length,
        text_source=args.text,
    )
    return limits, space, settings


def run(args) -> None:
    from core.jobs.search import SearchRequest, search
    from core.results.store import ResultsStore, RunRecord
    from core.search.summary import SearchSummary

    limits, space, settings = build_inputs(args)  # refused before the model loads
    store = ResultsStore()
    if not args.no_save:
        store.check_writable()
    loaded = load(args, "torch")
    language_model_options.refuse_for_classifier(
        args, loaded, "scored by accuracy on film reviews and calibrated on reviews"
    )
    _refuse_longer_than_context(args, loaded)
    request = SearchRequest(
        loaded,
        limits,
        args.objective or ("accuracy" if loaded.is_classifier else "ppl"),  # the kind's default
        args.budget_s,
        args.backend,
        settings,
        args.threads,
        args.ray,
        args.workers,
        space,
        args.proxy_windows,
        store_path=store.path,
    )
    summary = SearchSummary()
    for event in search(request, progress):  # each stage once (it came once per layer)
        if isinstance(event, RunRecord):
            if not args.no_save:  # as it arrives: an interrupt keeps what was measured
                store.append(event)
            continue
        summary.add(event)
        line = event_line(event)
        if line:
            note(line)
    if args.json:
        print(json_text(summary.to_dict()))
        return
    print_summary(summary.to_dict())


def event_line(event) -> str:
    """One log line for a search event (the window's log says the same)."""
    from core.search.events import (
        BestSoFar,
        CandidateMeasured,
        CandidateProposed,
        CandidateRejected,
        CandidateScored,
        LayersRanked,
        ReferenceMeasured,
        SearchNote,
        SearchStarted,
    )

    if isinstance(event, SearchStarted):
        return (
            f"search: {event.objective}; {event.limits}; budget {event.budget_s:g} s; "
            f"proxies {event.scoring}"
        )
    if isinstance(event, ReferenceMeasured):
        how = "found in the store" if event.reused else "measured"
        record = event.record
        quality = f"perplexity {_num(record.metric('ppl'))}"
        if record.metric("ppl") is None and record.metric("accuracy") is not None:
            quality = f"accuracy {record.metric('accuracy'):.4f}"
        return f"original {how}: {quality}"
    if isinstance(event, CandidateProposed):
        return f"proposed {event.label} (estimated {event.estimated_bytes / 1e6:.1f} MB)"
    if isinstance(event, CandidateScored):
        twin = " (its RTN twin)" if event.twin else ""
        cached = ", cached" if event.cached else ""
        return f"proxy {event.label}{twin}: KL {event.kl:.4g}{cached}"
    if isinstance(event, CandidateRejected):
        return f"dropped {event.label} at {event.stage}: {event.reason}"
    if isinstance(event, CandidateMeasured):
        how = "reused" if event.reused else f"measured in {event.seconds:.0f} s"
        verdict = "meets the limits" if not event.violations else "; ".join(event.violations)
        increase, accuracy = event.ppl_increase_pct, event.record.metric("accuracy")
        change = f", perplexity {increase:+.2f}%" if increase is not None else ""
        change += f", accuracy {accuracy:.4f}" if accuracy is not None else ""
        return (
            f"{how}: {event.label}: {event.record.bytes / 1e6:.1f} MB "
            f"({event.bytes_ratio:.3f}x){change}; {verdict}"
        )
    if isinstance(event, SearchNote):
        return event.text
    if isinstance(event, LayersRanked):
        return f"layers by sensitivity: {', '.join(map(str, event.layers))}"
    if isinstance(event, BestSoFar):
        return f"best so far: {event.label}"
    return ""


def _num(value) -> str:
    return "not measured" if value is None else f"{value:.3f}"


def _share(value) -> str:
    return "not measured" if value is None else f"{value:.1%}"


def print_summary(data: dict) -> None:
    print(f"search: {data['objective']}; {data['limits']}")
    print(f"  proxies: {'; '.join(part for part in (data['scoring'], data['proxy']) if part)}")
    counts = data["counts"] or {}
    print(
        f"  {counts.get('proposed', 0)} proposed, {counts.get('scored', 0)} scored, "
        f"{counts.get('measured', 0)} measured, {counts.get('reused', 0)} reused, "
        f"{counts.get('rejected', 0)} dropped; stopped: {data['stopped']} "
        f"after {data['elapsed_s']} s"
    )
    best = data["best"]
    if best is None:
        print("  no measured configuration meets the limits")
        return
    metrics = best["metrics"]
    print(f"best: {best['label']}  (run {best['run_id']})")
    if not (best.get("recipe") or {}).get("passes"):  # the original won: say it in words
        print("  no compressed configuration did better than the original by this objective")
    print(f"  {best['bytes'] / 1e6:.1f} MB ({best['bytes_ratio']:.3f}x the original)")
    if metrics.get("ppl") is not None:
        increase = best.get("ppl_increase_pct")
        change = f"{increase:+.2f}%" if increase is not None else "change not comparable"
        kl = metrics.get("mean_kl")
        print(
            f"  perplexity {metrics['ppl']:.3f} ({change}), "
            f"KL {'not measured' if kl is None else f'{kl:.4g} nats/token'}"
        )
    if metrics.get("accuracy") is not None:
        low, high = metrics.get("accuracy_ci95_low"), metrics.get("accuracy_ci95_high")
        ci = f" (95% CI {low:.1%} to {high:.1%})" if low is not None and high is not None else ""
        print(
            f"  accuracy {metrics['accuracy']:.1%}{ci}, agreement with the original "
            f"{_share(metrics.get('agreement'))}"
        )
    if metrics.get("latency_ms") is not None:
        print(f"  latency {metrics['latency_ms']:.2f} ms per review ({best['bench_protocol']})")
    if metrics.get("decode_ms_per_token") is not None:
        print(f"  decode {metrics['decode_ms_per_token']:.2f} ms/token ({best['bench_protocol']})")
    print(
        f"  on {best.get('backend') or 'torch'}; eval protocol {best.get('eval_protocol') or '-'}"
    )
    if best.get("machine_busy"):
        print(f"  BUSY MACHINE: {best['machine_busy']}")
    print(f"  recipe: {json.dumps(best['recipe'])}")


def _refuse_longer_than_context(args, loaded) -> None:
    """A window or calibration length given past the model's context was cut
    to it without a word (eval and distill refuse it); the defaults are still
    fitted to a short model quietly."""
    from core.runtime.generation import context_length

    if loaded.is_classifier:
        return
    context = context_length(loaded.model.config)
    defaults = getattr(args, language_model_options.KEY)
    for dest in ("eval_context", "calibration_length"):
        value = getattr(args, dest)
        if value != defaults[dest] and value > context:
            flag = "--" + dest.replace("_", "-")
            raise ValueError(
                f"{flag} {value:,}: longer than the model's context ({context:,} tokens)"
            )
