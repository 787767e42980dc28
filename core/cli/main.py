"""The headless command line: the same jobs the window runs, printed.

``workbench info|generate|bench|eval|compress|export|distill`` (or ``workbench-cli``).
Every command works on the embedded default model with no arguments, and bad input exits with
status 2 and a one-line reason on stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace

from core.cli import args as cli_args
from core.cli.args import whole
from core.cli.compress import add_parser as add_compress_parser
from core.cli.compress import cmd_compress
from core.cli.distill import add_parser as add_distill_parser
from core.cli.distill import cmd_distill
from core.cli.export import add_parser as add_export_parser
from core.cli.export import cmd_export
from core.errors import Cancelled, WorkbenchError
from core.message_text import one_line
from core.progress import Progress

EXIT_BAD_INPUT = 2


def _add_model_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model",
        "-m",
        default="default",
        type=cli_args.model_source,
        help="'default' (embedded SmolLM2-135M-Instruct), 'demo-classifier' (the MiniLM "
        "sentiment classifier, once `workbench train-classifier` prepared it), a local HF "
        "folder, or a hub id",
    )
    parser.add_argument(
        "--device",
        default="auto",
        type=cli_args.device,
        help="auto, cpu, cuda or cuda:N (default: auto)",
    )
    parser.add_argument(
        "--dtype",
        default="auto",
        choices=["auto", "float32", "bfloat16", "float16"],
        help="weights dtype (auto: float32 on CPU, bf16/fp16 on CUDA)",
    )
    parser.add_argument(
        "--threads",
        type=cli_args.threads,
        default=None,
        help="CPU threads for torch (default: all usable)",
    )


def _add_backend_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--backend",
        default="torch",
        choices=["torch", "torch-compile", "ort"],
        help="torch (default, eager), torch-compile (decode step compiled by torch.compile, "
        "static cache), or ort: the model exported to ONNX (cached) run in ONNX Runtime",
    )
    parser.add_argument(
        "--int8", action="store_true", help="with --backend ort: int8 weights (quantize_dynamic)"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = cli_args.OneLineParser(
        prog="workbench",
        description="Compression Workbench, headless. `workbench` alone opens the window.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    info = sub.add_parser("info", help="describe a model: architecture, size, parameters")
    _add_model_args(info)
    info.add_argument("--json", action="store_true", help="print one JSON object")

    gen = sub.add_parser("generate", help="generate text, streamed, and print tokens/s")
    _add_model_args(gen)
    gen.add_argument("--prompt", "-p", default="The capital of France is", help="prompt text")
    gen.add_argument("--max-new-tokens", "-n", type=whole(1), default=64)
    gen.add_argument(
        "--temperature", type=cli_args.number(0.0), default=0.0, help="0: greedy (default)"
    )
    gen.add_argument("--top-k", type=whole(0), default=0, help="0: no top-k cut (default)")
    gen.add_argument("--top-p", type=cli_args.number(0.0, 1.0, above_minimum=True), default=1.0)
    gen.add_argument("--seed", type=cli_args.seed, default=None)
    gen.add_argument("--chat", action="store_true", help="wrap the prompt in the chat template")
    gen.add_argument("--json", action="store_true", help="print a JSON summary at the end")
    _add_backend_args(gen)

    bench = sub.add_parser("bench", help="measure prefill and decode speed (the protocol)")
    _add_model_args(bench)
    bench.add_argument("--prompt-tokens", type=whole(1), default=128)
    bench.add_argument("--new-tokens", type=whole(2), default=64)
    bench.add_argument("--warmup", type=whole(0), default=1)
    bench.add_argument("--min-repeats", type=whole(1), default=5)
    bench.add_argument(
        "--min-time", type=cli_args.number(0.0, 86400.0), default=5.0, help="seconds (default 5)"
    )
    bench.add_argument("--max-repeats", type=whole(1), default=50)
    bench.add_argument("--json", action="store_true", help="print one JSON object")
    _add_backend_args(bench)

    ev = sub.add_parser(
        "eval", help="perplexity with a 95%% CI; fidelity to a reference; sentiment accuracy"
    )
    _add_model_args(ev)
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
        "--context-tokens", type=whole(2), default=512, help="window length (default 512)"
    )
    ev.add_argument(
        "--stride", type=whole(1), default=256, help="tokens scored per window (default 256)"
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
    _add_backend_args(ev)

    clf = sub.add_parser(
        "train-classifier",
        help="fine-tune the bundled MiniLM encoder on film-review sentiment, score it on test",
    )
    clf.add_argument("--fast", action="store_true", help="the small CI variant (~15 s)")
    clf.add_argument("--train-examples", type=whole(0), default=None, help="default 4000; 0: all")
    clf.add_argument("--epochs", type=whole(0, 1000), default=None, help="default 1")
    clf.add_argument(
        "--out",
        default=None,
        help="save the trained classifier to this folder (default: with the standard settings, "
        "cache it as --model demo-classifier, or demo-classifier-fast with --fast)",
    )
    clf.add_argument("--threads", type=cli_args.threads, default=None, help="CPU threads")
    clf.add_argument("--json", action="store_true", help="print one JSON object")
    add_compress_parser(sub, _add_model_args)
    add_export_parser(sub, _add_model_args)
    add_distill_parser(sub, _add_model_args)
    return parser


def _progress(event: Progress) -> None:
    print(f"[{event.stage}]", file=sys.stderr, flush=True)


def _load(args):
    from core.models.loading import load_model
    from core.runtime.device import set_threads
    from core.runtime.runners import is_onnx_runtime

    set_threads(args.threads)
    backend = getattr(args, "backend", "torch")
    if getattr(args, "int8", False) and backend != "ort":
        raise ValueError("--int8 needs --backend ort")
    dtype = None if args.dtype == "auto" else args.dtype
    loaded = load_model(args.model, device=args.device, dtype=dtype, progress=_progress)
    if backend == "ort" and not is_onnx_runtime(loaded.model):
        from core.onnx.cache import load_ort_version

        loaded = load_ort_version(loaded, args.int8, args.device, _progress)
    if backend == "torch-compile":  # bench and generate compile it before timing anything
        import dataclasses

        from core.runtime.runners import COMPILED_RUNNER

        loaded = dataclasses.replace(loaded, runner=COMPILED_RUNNER)
    return loaded


def cmd_info(args) -> None:
    from core.models.description import human_bytes

    d = _load(args).description
    if args.json:
        print(json.dumps(d.to_dict(), indent=2))
        return
    print(f"{d.architecture} ({d.model_type}) from {d.source}")
    print(
        f"  layers {d.layers}, hidden {d.hidden_size}, heads {d.attention_heads}/{d.kv_heads} kv,"
        f" MLP {d.intermediate_size}, vocab {d.vocab_size}"
    )
    print(
        f"  parameters {d.parameters:,}; in memory {human_bytes(d.bytes_in_memory)} "
        f"{d.bytes_by_dtype}; on disk {human_bytes(d.bytes_on_disk)}; device {d.device}"
    )
    for note in d.notes:
        print(f"  note: {note}")


def cmd_generate(args) -> None:
    from core.runtime.generation import GenerationSummary, TextToken, stream_generation
    from core.runtime.runners import COMPILED_RUNNER
    from core.runtime.sampling import Sampling

    sampling = Sampling(args.temperature, args.top_k, args.top_p, args.seed)
    loaded = _load(args)
    if loaded.runner == COMPILED_RUNNER:
        _note("Compiling the decode step (torch.compile) before generating; not timed")
    summary = None
    for event in stream_generation(loaded, args.prompt, args.max_new_tokens, sampling, args.chat):
        if isinstance(event, TextToken) and not args.json:
            print(event.text, end="", flush=True)
        elif isinstance(event, GenerationSummary):
            summary = event
    if args.json:
        print(json.dumps(summary.__dict__, indent=2))
        return
    tps = f"{summary.tokens_per_s:.1f} tokens/s" if summary.tokens_per_s else "n/a tokens/s"
    compiled = (
        f"; decode step compiled in {summary.compile_s:.1f} s before the first token (not timed)"
        if summary.compile_s is not None
        else ""
    )
    print(
        f"\n\n[{summary.new_tokens} tokens, first after {summary.prefill_ms:.0f} ms, "
        f"then {tps}; stopped: {summary.stop_reason}{compiled}]",
        file=sys.stderr,
    )


def cmd_bench(args) -> None:
    from core.measure.speed import BenchSettings, RunTiming, benchmark

    settings = BenchSettings(
        prompt_tokens=args.prompt_tokens,
        new_tokens=args.new_tokens,
        warmup=args.warmup,
        min_repeats=args.min_repeats,
        min_time_s=args.min_time,
        max_repeats=args.max_repeats,
    )
    loaded = _load(args)
    if loaded.is_classifier:
        _bench_classifier(args, loaded)
        return
    _check_context(loaded, settings.prompt_tokens + settings.new_tokens)
    result = None
    for event in benchmark(loaded, settings):
        if isinstance(event, RunTiming):
            label = "warm-up" if event.warmup else f"run {event.run - settings.warmup + 1}"
            print(
                f"[{label}: prefill {event.prefill_ms:.1f} ms, "
                f"decode {event.decode_ms_per_token:.2f} ms/token]",
                file=sys.stderr,
                flush=True,
            )
        result = event
    data = result.to_dict()
    _print_bench(
        args,
        loaded,
        result,
        f"  prefill  {data['prefill_ms']:.1f} ms  [p10 {data['prefill_ms_p10']:.1f}, "
        f"p90 {data['prefill_ms_p90']:.1f}]\n"
        f"  decode   {data['decode_ms_per_token']:.2f} ms/token  "
        f"[p10 {data['decode_ms_per_token_p10']:.2f}, p90 {data['decode_ms_per_token_p90']:.2f}]"
        f"  = {data['tokens_per_s']:.1f} tokens/s",
    )


def _check_context(loaded, tokens: int) -> None:
    """Refuse a benchmark longer than the model's context (it would fail, or
    time positions the model was never trained for)."""
    from core.runtime.generation import context_length

    limit = context_length(loaded.model.config)
    if tokens > limit:
        raise ValueError(
            f"--prompt-tokens + --new-tokens is {tokens}, over the model's {limit}-token context"
        )


def _print_bench(args, loaded, result, lines: str) -> None:
    """A benchmark result as JSON, or as the environment, ``lines``, memory, protocol."""
    data = result.to_dict()
    if args.json:
        print(json.dumps(data, indent=2))
        return
    env = result.environment
    print(
        f"{loaded.description.architecture} on {env.device} ({env.device_name}), {env.dtype}, "
        f"{env.threads} threads"
    )
    print(lines)
    peak = data["peak_memory_bytes"]
    memory = "not measured" if peak is None else f"{peak / 2**20:.0f} MiB"
    print(f"  memory   {memory} ({data['peak_memory_kind']})")
    print(f"  protocol {result.protocol}; {result.runs} runs")
    if result.machine_busy:
        print(f"  BUSY MACHINE: {result.machine_busy}")


def _bench_classifier(args, loaded) -> None:
    """The encoder protocol: batch-1 classification of one fixed input."""
    from core.measure.classifier_speed import ClassifierBenchSettings, benchmark_classifier

    settings = ClassifierBenchSettings(
        warmup=args.warmup,
        min_repeats=args.min_repeats,
        min_time_s=args.min_time,
        max_repeats=max(args.max_repeats, args.min_repeats),
    )
    *_, result = benchmark_classifier(loaded, settings)
    data = result.to_dict()
    _print_bench(
        args,
        loaded,
        result,
        f"  latency  {data['latency_ms']:.2f} ms  [p10 {data['latency_ms_p10']:.2f}, "
        f"p90 {data['latency_ms_p90']:.2f}]  = {data['examples_per_s']:.1f} examples/s",
    )


def _eval_protocol(args):
    """The protocol ``args`` ask for, the text file (if any) checked: before any model loads."""
    from core.data.own_text import check_fills_window, read_text_file
    from core.data.texts import SOURCES
    from core.evaluate.perplexity import PerplexityProtocol

    quick, full = 10, 200
    if args.windows is not None:
        quick = full = args.windows
    protocol = PerplexityProtocol(
        context_tokens=args.context_tokens,
        stride=args.stride,
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


def _same_tokenizer(a, b) -> bool:
    return a.get_vocab() == b.get_vocab()


def cmd_eval(args) -> None:
    from dataclasses import asdict

    from core.evaluate.fidelity import FidelityPartial, evaluate_fidelity
    from core.evaluate.perplexity import PerplexityPartial, evaluate_perplexity, perplexity_windows
    from core.evaluate.side_by_side import side_by_side_generations
    from core.evaluate.zero_shot import AccuracyPartial, ZeroShotProtocol, evaluate_zero_shot

    protocol = _eval_protocol(args)  # refuse bad options before loading
    if args.sentiment and args.backend != "torch":
        raise ValueError("--sentiment runs on the torch backend only")
    loaded = _load(args)
    if loaded.is_classifier:
        _eval_classifier(args, loaded)
        return
    model, tokenizer = loaded.model, loaded.tokenizer
    windows = perplexity_windows(tokenizer, protocol)
    ppl = None
    for event in evaluate_perplexity(model, tokenizer, protocol, windows=windows):
        if isinstance(event, PerplexityPartial):
            half = event.ci95_halfwidth
            ci = f" (95% CI half-width {half:.2f})" if half is not None else ""
            _note(f"window {event.windows_done}/{event.windows_total}: ppl {event.ppl:.2f}{ci}")
        ppl = event
    report = {"model": args.model, "perplexity": asdict(ppl)}

    if args.reference is not None:
        if args.reference == args.model and args.dtype == "auto" and args.backend == "torch":
            reference = loaded
        else:  # the reference in the device's default dtype: --dtype is the candidate's
            from core.models.loading import load_model

            reference = load_model(args.reference, args.device, progress=_progress)
        if not _same_tokenizer(reference.tokenizer, tokenizer):
            raise ValueError(f"{args.reference} uses a different tokenizer; fidelity needs one")
        fidelity = None
        for event in evaluate_fidelity(reference.model, model, tokenizer, windows):
            if isinstance(event, FidelityPartial):
                _note(
                    f"fidelity {event.windows_done}/{event.windows_total}: "
                    f"KL {event.mean_kl:.4f}, top-1 {event.top1_agreement:.1%}"
                )
            fidelity = event
        pairs = list(side_by_side_generations(reference.model, model, tokenizer))
        report |= {
            "reference": args.reference,
            "fidelity": asdict(fidelity),
            "generations": [asdict(p) for p in pairs],
        }

    if args.sentiment:
        accuracy = None
        task = ZeroShotProtocol(mode=args.mode)
        for event in evaluate_zero_shot(model, tokenizer, task):
            if isinstance(event, AccuracyPartial) and event.done % 25 == 0:
                _note(f"sentiment {event.done}/{event.total}: {event.accuracy:.1%}")
            accuracy = event
        report["sentiment"] = asdict(accuracy)

    if args.json:
        print(json.dumps(report, indent=2))
        return
    _print_eval(loaded, report)


def _eval_classifier(args, loaded) -> None:
    """Sentiment accuracy (and agreement with --reference) of a classifier."""
    from dataclasses import asdict

    from core.evaluate.classifier_accuracy import (
        ClassifierProtocol,
        evaluate_classifier,
    )
    from core.evaluate.zero_shot import AccuracyPartial

    reference = None
    if args.reference is not None:
        from core.models.loading import load_model

        reference = load_model(args.reference, args.device, progress=_progress)
        if not reference.is_classifier:
            raise ValueError(f"{args.reference} is not a classifier; agreement needs one")
        if not _same_tokenizer(reference.tokenizer, loaded.tokenizer):
            raise ValueError(f"{args.reference} uses a different tokenizer; agreement needs one")
    result = None
    protocol = ClassifierProtocol(mode=args.mode)
    for event in evaluate_classifier(
        loaded.model, loaded.tokenizer, protocol, reference=reference and reference.model
    ):
        if isinstance(event, AccuracyPartial):
            _note(f"reviews {event.done}/{event.total}: accuracy {event.accuracy:.1%}")
        result = event
    report = {"model": args.model, "task": loaded.task, "accuracy": asdict(result)}
    if reference is not None:
        report["reference"] = args.reference
    if args.json:
        print(json.dumps(report, indent=2))
        return
    a = report["accuracy"]
    flag = "  NEAR OR BELOW CHANCE" if a["near_chance"] else ""
    print(f"{loaded.description.architecture} from {args.model} on {loaded.device}")
    print(
        f"  accuracy {a['accuracy']:.1%} ({a['correct']}/{a['examples']}, 95% CI "
        f"{a['ci95_low']:.1%} to {a['ci95_high']:.1%}); always-majority scores "
        f"{a['majority_rate']:.1%}{flag}"
    )
    if a["agreement"] is not None:
        print(f"  agreement with {args.reference}: {a['agreement']:.1%} of the reviews")
    print(f"  protocol {a['protocol']}")


def _note(text: str) -> None:
    print(f"[{text}]", file=sys.stderr, flush=True)


def _print_eval(loaded, report: dict) -> None:
    p = report["perplexity"]
    print(f"{loaded.description.architecture} from {report['model']} on {loaded.device}")
    if p["ci95_low"] is None:
        print(f"  perplexity {p['ppl']:.2f} (one window: no interval)")
    else:
        print(
            f"  perplexity {p['ppl']:.2f} (95% CI {p['ci95_low']:.2f} to {p['ci95_high']:.2f}), "
            f"{p['tokens_scored']} tokens in {p['windows']} windows, {p['seconds']:.1f} s"
        )
    print(f"  protocol {p['protocol']}")
    if "fidelity" in report:
        f = report["fidelity"]
        kl_ci = f" +- {f['kl_ci95_halfwidth']:.4f}" if f["kl_ci95_halfwidth"] is not None else ""
        print(
            f"  fidelity to {report['reference']}: KL {f['mean_kl']:.4f}{kl_ci} nats/token, "
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


def cmd_train_classifier(args) -> None:
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
        if args.epochs < 1:
            raise ValueError("--epochs must be at least 1")
        settings = replace(settings, epochs=args.epochs)
    out = Path(args.out) if args.out else None
    standard = settings in (FAST, ClassifierSettings())
    if out is None and standard:  # prepare: train and cache as --model demo-classifier[-fast]
        from core.jobs.prepare_classifier import ClassifierReady, prepare_demo_classifier

        job = prepare_demo_classifier(args.fast, _progress, force=True)
    else:
        job = finetune_sentiment_classifier(settings, output_dir=out)
    result = ready = None
    for event in job:
        if isinstance(event, TrainStep) and (event.step % 10 == 0 or event.step == 1):
            _note(f"step {event.step}/{event.steps_total}: loss {event.loss:.3f}")
        elif out is None and standard and isinstance(event, ClassifierReady):
            ready = event
            continue
        result = event
    if args.json:
        print(json.dumps(asdict(result), indent=2))
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


COMMANDS = {
    "compress": lambda args: cmd_compress(args, _load),
    "export": lambda args: cmd_export(args, _load),
    "distill": lambda args: cmd_distill(args, _load),
    "info": cmd_info,
    "generate": cmd_generate,
    "bench": cmd_bench,
    "eval": cmd_eval,
    "train-classifier": cmd_train_classifier,
}


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except cli_args.ArgumentsError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        COMMANDS[args.command](args)
    except (WorkbenchError, ValueError) as err:
        if isinstance(err, Cancelled):
            print("cancelled", file=sys.stderr)
        else:  # escaped: a message quoting user input stays one line
            print(f"error: {one_line(str(err))}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
