"""Prompt lookup decoding against plain greedy decoding, side by side: decode
ms/token of the same answers, on the default model, per runtime and prompt.

Prompt lookup (core/runtime/prompt_lookup.py) drafts tokens copied from the
text so far and checks them in one model step. Its gain depends on how much
the answer repeats its prompt or itself, so the prompts span that range: a
text to correct and write out (mostly copied), code to edit, names to list
from a passage, and an open question (little to copy). Each pair (plain,
lookup) runs in interleaved rounds on one runtime at a time; the answers
must be the same tokens (it is greedy decoding either way), and the row says
if they were not.

    .venv/bin/python benchmarks/prompt_lookup_speed.py [--runtimes torch ort-fused-w8]
        [--draft-tokens 8] [--new-tokens 128] [--rounds 3] [--threads 2]

Per row: decode ms/token (median over rounds; the tokens after the first,
the first holding the prompt), the ratio plain / lookup, draft tokens kept
of those proposed, model steps after the first. Last line: one JSON object
with every row and, per runtime, the geometric mean of the ratios.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics

from core.jobs.on_runtime import prepare
from core.models.loading import load_model
from core.runtime.device import set_threads
from core.runtime.generation import GenerationSummary, stream_generation
from core.runtime.prompt_lookup import PromptLookup

PROMPTS = {
    "correct_text": (
        "Correct the spelling mistakes in this paragraph and write the whole corrected "
        "paragraph out:\n\nThe comittee met on tuesday to discus the new libary budget. "
        "Most members agreed that the childrens section needs more books, but there was "
        "a long arguement about the opening hours, which some people think are to short."
    ),
    "edit_code": (
        "Add a docstring to this Python function and return the whole function:\n\n"
        "def moving_average(values, window):\n"
        "    if window <= 0:\n"
        "        raise ValueError('window must be positive')\n"
        "    total = sum(values[:window])\n"
        "    averages = [total / window]\n"
        "    for i in range(window, len(values)):\n"
        "        total += values[i] - values[i - window]\n"
        "        averages.append(total / window)\n"
        "    return averages\n"
    ),
    "list_names": (
        "Read the passage and list every person it names, one per line.\n\n"
        "Ada Lovelace worked with Charles Babbage on the Analytical Engine. Years later, "
        "Alan Turing described a universal machine, and Grace Hopper wrote one of the "
        "first compilers. John von Neumann described the stored-program design."
    ),
    "open_question": "Explain in a short paragraph why the sky is blue.",
}


def _run(loaded, prompt: str, new_tokens: int, lookup) -> GenerationSummary:
    for event in stream_generation(loaded, prompt, new_tokens, chat=True, lookup=lookup):
        if isinstance(event, GenerationSummary):
            return event
    raise RuntimeError("no summary")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runtimes", nargs="+", default=["torch", "ort-fused-w8"])
    parser.add_argument("--draft-tokens", type=int, default=8)
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    set_threads(args.threads)
    original = load_model("default", device="cpu")
    lookup = PromptLookup(args.draft_tokens)
    print(f"model {original.source}, {args.threads} threads, draft {args.draft_tokens} tokens")
    rows = []
    for key in args.runtimes:
        loaded = prepare(original, key, 1024).loaded
        _run(loaded, "Warm up.", 8, None)  # first-call costs (allocations, kernels) untimed
        for name, prompt in PROMPTS.items():
            plain_ms, lookup_ms = [], []
            for _ in range(args.rounds):
                plain = _run(loaded, prompt, args.new_tokens, None)
                looked = _run(loaded, prompt, args.new_tokens, lookup)
                plain_ms.append(plain.decode_ms_per_token)
                lookup_ms.append(looked.decode_ms_per_token)
            row = {
                "runtime": key,
                "prompt": name,
                "tokens": looked.new_tokens,
                "same_answer": plain.text == looked.text,
                "plain_ms_per_token": statistics.median(plain_ms),
                "lookup_ms_per_token": statistics.median(lookup_ms),
                "kept": looked.lookup["accepted"],
                "drafted": looked.lookup["drafted"],
                "steps": looked.lookup["steps"],
            }
            row["speedup"] = row["plain_ms_per_token"] / row["lookup_ms_per_token"]
            rows.append(row)
            print(
                f"  {key:14s} {name:14s} {row['tokens']:4d} tokens  plain "
                f"{row['plain_ms_per_token']:6.2f}  lookup {row['lookup_ms_per_token']:6.2f} "
                f"ms/token  x{row['speedup']:.2f}  kept {row['kept']}/{row['drafted']}  "
                f"{row['steps']} steps  same answer: {row['same_answer']}",
                flush=True,
            )
    means = {
        key: math.exp(statistics.mean(math.log(r["speedup"]) for r in rows if r["runtime"] == key))
        for key in args.runtimes
    }
    for key, mean in means.items():
        print(f"  {key}: geometric mean speedup x{mean:.2f} over {len(PROMPTS)} prompts")
    print(json.dumps({"threads": args.threads, "rows": rows, "geomean_speedup": means}))


if __name__ == "__main__":
    main()
