"""`workbench bench`: the speed protocol (prefill and decode of a causal LM,
batch-1 latency of a classifier) through the Bench job."""

from __future__ import annotations

import sys
from dataclasses import replace

from core.cli import args as cli_args
from core.cli import language_model_options
from core.cli.args import whole
from core.cli.common import add_model_args, add_runtime_args, load
from core.cli.json_out import json_text


def add_parser(sub) -> None:
    bench = sub.add_parser("bench", help="measure prefill and decode speed (the protocol)")
    add_model_args(bench)
    bench.add_argument("--prompt-tokens", type=whole(1), default=128)
    bench.add_argument("--new-tokens", type=whole(2), default=64)
    bench.add_argument("--warmup", type=whole(0), default=1)
    bench.add_argument("--min-repeats", type=whole(1), default=5)
    bench.add_argument(
        "--min-time", type=cli_args.number(0.0, 86400.0), default=5.0, help="seconds (default 5)"
    )
    bench.add_argument("--max-repeats", type=whole(1), default=50)
    bench.add_argument("--json", action="store_true", help="print one JSON object")
    language_model_options.mark(bench, ("prompt_tokens", "new_tokens"))
    add_runtime_args(bench)


def run(args) -> None:
    from core.jobs.bench import BenchRequest, bench
    from core.measure.speed import RunTiming

    request = BenchRequest(
        None,
        args.prompt_tokens,
        args.new_tokens,
        args.warmup,
        args.min_repeats,
        args.min_time,
        args.max_repeats,
    )
    if args.min_repeats > args.max_repeats:  # named as the options, not the protocol's fields
        raise ValueError(
            f"--min-repeats {args.min_repeats:,} is more than --max-repeats {args.max_repeats:,}"
        )
    request.lm_settings()  # refuses inconsistent counts before any model loads
    loaded = load(args)
    language_model_options.refuse_for_classifier(args, loaded, "timed on one review input")
    request = replace(request, loaded=loaded)
    result = None
    for event in bench(request):
        if isinstance(event, RunTiming):
            label = "warm-up" if event.warmup else f"run {event.run - args.warmup + 1}"
            print(
                f"[{label}: prefill {event.prefill_ms:.1f} ms, "
                f"decode {event.decode_ms_per_token:.2f} ms/token]",
                file=sys.stderr,
                flush=True,
            )
        result = event
    data = result.to_dict()
    if "latency_ms" in data:  # a classifier's protocol: batch-1 latency
        lines = (
            f"  latency  {data['latency_ms']:.2f} ms  [p10 {data['latency_ms_p10']:.2f}, "
            f"p90 {data['latency_ms_p90']:.2f}]  = {data['examples_per_s']:.1f} examples/s"
        )
    else:
        lines = (
            f"  prefill  {data['prefill_ms']:.1f} ms  [p10 {data['prefill_ms_p10']:.1f}, "
            f"p90 {data['prefill_ms_p90']:.1f}]\n"
            f"  decode   {data['decode_ms_per_token']:.2f} ms/token  "
            f"[p10 {data['decode_ms_per_token_p10']:.2f}, "
            f"p90 {data['decode_ms_per_token_p90']:.2f}]  = {data['tokens_per_s']:.1f} tokens/s"
        )
    _print_bench(args, loaded, result, lines)


def _print_bench(args, loaded, result, lines: str) -> None:
    """A benchmark result as JSON, or as the environment, ``lines``, memory, protocol."""
    data = result.to_dict()
    if args.json:
        print(json_text(data))
        return
    env = result.environment
    precision = getattr(loaded.model, "precision", env.dtype)  # a graph's own weights
    print(
        f"{loaded.description.architecture} on {env.device} ({env.device_name}), {precision}, "
        f"{env.threads} threads, runner {env.runner}"
    )
    print(lines)
    peak = data["peak_memory_bytes"]
    memory = "not measured" if peak is None else f"{peak / 2**20:.0f} MiB"
    print(f"  memory   {memory} ({data['peak_memory_kind']})")
    print(f"  protocol {result.protocol}; {result.runs} runs")
    if result.machine_busy:
        print(f"  BUSY MACHINE: {result.machine_busy}")
