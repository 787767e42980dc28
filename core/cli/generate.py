"""`workbench generate`: stream a model's answer and print tokens/s."""

from __future__ import annotations

import argparse
import sys

from core.cli import args as cli_args
from core.cli.args import whole
from core.cli.common import add_model_args, add_runtime_args, load, note, runtime_key
from core.cli.json_out import json_text
from core.cli.terminal_text import visible
from core.message_text import shown
from core.runtime.prompt_lookup import MAX_DRAFT_TOKENS


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
    gen.add_argument(
        "--num-beams",
        type=whole(1, MAX_BEAMS),
        default=1,
        help="beam search with this many beams (1: no beam search, default)",
    )
    gen.add_argument(
        "--length-penalty",
        type=cli_args.number(-10.0, 10.0),
        default=None,
        help="beam search: a finished answer's log-probability is divided by its length to "
        "this power; > 0 favours longer answers (default 1.0)",
    )
    gen.add_argument(
        "--early-stopping",
        type=early_stopping,
        default=None,
        help="beam search: true stops when num-beams answers are finished; false (default) "
        "when no running beam is likely to beat them; never when none can",
    )
    gen.add_argument(
        "--prompt-lookup",
        type=whole(0, MAX_DRAFT_TOKENS),
        default=0,
        metavar="N",
        help="greedy decoding with drafts of up to N tokens copied from the text so far, "
        "each checked in one model step: the same answer in fewer steps when it repeats "
        "its prompt or itself (0: off, default)",
    )
    gen.add_argument("--chat", action="store_true", help="wrap the prompt in the chat template")
    gen.add_argument("--json", action="store_true", help="print a JSON summary at the end")
    add_runtime_args(gen)


MAX_BEAMS = 64  # each beam holds its own KV cache row


def early_stopping(text: str) -> bool | str:
    """true, false or never (transformers' early_stopping values)."""
    value = {"true": True, "false": False, "never": "never"}.get(text.strip().lower())
    if value is None:
        raise argparse.ArgumentTypeError(f"must be true, false or never, got {shown(text)}")
    return value


def beam_search(args):
    """The BeamSearch ``args`` ask for, or None; a beam setting without
    --num-beams >= 2 is refused rather than ignored."""
    from core.runtime.beam_search import BeamSearch

    if args.num_beams == 1:
        if args.length_penalty is not None or args.early_stopping is not None:
            raise ValueError(
                "--length-penalty and --early-stopping apply to beam search: "
                "add --num-beams N (N >= 2)"
            )
        return None
    return BeamSearch(
        args.num_beams,
        1.0 if args.length_penalty is None else args.length_penalty,
        False if args.early_stopping is None else args.early_stopping,
    )


def run(args) -> None:
    from core.jobs.generate import GenerateRequest, check_beam_search, check_lookup, generate
    from core.runtime.generation import GenerationSummary, TextToken
    from core.runtime.prompt_lookup import PromptLookup
    from core.runtime.registry import runtime
    from core.runtime.runners import COMPILED_RUNNER, TORCH_RUNNER
    from core.runtime.sampling import Sampling

    sampling = Sampling(args.temperature, args.top_k, args.top_p, args.seed)
    beams = beam_search(args)
    chosen = runtime(runtime_key(args))
    check_beam_search(sampling, beams, chosen.onnx)  # before loading
    lookup = PromptLookup(args.prompt_lookup) if args.prompt_lookup else None
    check_lookup(sampling, beams, lookup, COMPILED_RUNNER if chosen.compiled else TORCH_RUNNER)
    loaded = load(args)
    if loaded.runner == COMPILED_RUNNER:
        note("Compiling the decode step (torch.compile) before generating; not timed")
    if beams is not None and not args.json:
        note(f"Beam search ({beams.num_beams} beams): the answer is printed when it ends")
    summary = None
    request = GenerateRequest(
        loaded, args.prompt, args.max_new_tokens, sampling, args.chat, beam_search=beams,
        lookup=lookup, threads=args.threads,  # the job sets them: None would mean every CPU
    )  # fmt: skip
    for event in generate(request):
        if isinstance(event, TextToken) and not args.json:
            print(visible(event.text), end="", flush=True)
        elif isinstance(event, GenerationSummary):
            summary = event
    if args.json:
        print(json_text(summary.__dict__))
        return
    if beams is None:
        print(visible(summary.tail), end="", flush=True)  # bytes that never made a character
    if beams is not None:
        print(visible(summary.text), end="", flush=True)
        _print_beam_summary(summary)
        return
    tps = f"{summary.tokens_per_s:.1f} tokens/s" if summary.tokens_per_s else "n/a tokens/s"
    compiled = (
        f"; decode step compiled in {summary.compile_s:.1f} s before the first token (not timed)"
        if summary.compile_s is not None
        else ""
    )
    drafts = ""
    if summary.lookup:
        counts = summary.lookup
        drafts = (
            f"; prompt lookup kept {counts['accepted']} of {counts['drafted']} draft tokens, "
            f"{counts['steps']} steps after the first"
        )
    print(
        f"\n\n[{summary.new_tokens} tokens, first after {summary.prefill_ms:.0f} ms, "
        f"then {tps}; stopped: {summary.stop_reason}{compiled}{drafts}; "
        f"one run, {summary.measured_on}]",
        file=sys.stderr,
    )
    if summary.lookup and summary.lookup.get("note"):
        note(f"Note: {summary.lookup['note']}")


def _print_beam_summary(summary) -> None:
    step = (
        f"then {summary.decode_ms_per_token:.1f} ms/step ({summary.tokens_per_s:.1f} steps/s)"
        if summary.decode_ms_per_token
        else "no later step"
    )
    compiled = (
        f"; decode step compiled in {summary.compile_s:.1f} s before the first step (not timed)"
        if summary.compile_s is not None
        else ""
    )
    print(
        f"\n\n[beam search, {summary.num_beams} beams: {summary.new_tokens} tokens chosen after "
        f"{summary.search_steps} steps, first step (prompt) {summary.prefill_ms:.0f} ms, {step}; "
        f"stopped: {summary.stop_reason}{compiled}; one run, {summary.measured_on}]",
        file=sys.stderr,
    )
