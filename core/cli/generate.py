"""`workbench generate`: stream a model's answer and print tokens/s."""

from __future__ import annotations

import json
import sys

from core.cli import args as cli_args
from core.cli.args import whole
from core.cli.common import add_model_args, add_runtime_args, load, note


def add_parser(sub) -> None:
    gen = sub.add_parser("generate", help="generate text, streamed, and print tokens/s")
    add_model_args(gen)
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
    add_runtime_args(gen)


def run(args) -> None:
    from core.jobs.generate import GenerateRequest, generate
    from core.runtime.generation import GenerationSummary, TextToken
    from core.runtime.runners import COMPILED_RUNNER
    from core.runtime.sampling import Sampling

    sampling = Sampling(args.temperature, args.top_k, args.top_p, args.seed)
    loaded = load(args)
    if loaded.runner == COMPILED_RUNNER:
        note("Compiling the decode step (torch.compile) before generating; not timed")
    summary = None
    request = GenerateRequest(loaded, args.prompt, args.max_new_tokens, sampling, args.chat)
    for event in generate(request):
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
