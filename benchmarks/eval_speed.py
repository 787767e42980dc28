"""How long a quick perplexity estimate takes, and what it costs to be exact.

Runs the quick protocol on the model (time includes building the windows),
then scores the same windows the naive way, with Hugging Face's ``labels=``
loss (full logits at every position), as a side-by-side check of speed and
of the value. With ``--full`` it also runs the full protocol and says whether
the quick 95% interval contains the full estimate.

    .venv/bin/python benchmarks/eval_speed.py [--model default] [--threads N] [--full]

Last line: one JSON object (tokens_per_s, quick_estimate_s, ppl, ppl_ci95, protocol, ...).
"""

from __future__ import annotations

import argparse
import json
import time

from core.evaluate.hf_reference import hf_labels_perplexity
from core.evaluate.perplexity import (
    FULL_PROTOCOL,
    QUICK_PROTOCOL,
    PerplexityProtocol,
    compute_perplexity,
    perplexity_windows,
)
from core.models.loading import load_model
from core.runtime.device import set_threads


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--full", action="store_true", help="also run the full protocol")
    args = parser.parse_args()

    threads = set_threads(args.threads)
    loaded = load_model(args.model)
    model, tokenizer = loaded.model, loaded.tokenizer
    compute_perplexity(model, tokenizer, PerplexityProtocol(quick_windows=1))  # warm-up

    quick = compute_perplexity(model, tokenizer, QUICK_PROTOCOL)
    processed = quick.windows * QUICK_PROTOCOL.context_tokens
    print(
        f"quick: ppl {quick.ppl:.3f} +- {quick.ci95_halfwidth:.3f} in {quick.seconds:.1f} s "
        f"({processed / quick.seconds:.0f} tokens/s processed)",
        flush=True,
    )

    windows = perplexity_windows(tokenizer, QUICK_PROTOCOL)
    start = time.perf_counter()
    hf_ppl = hf_labels_perplexity(model, windows, QUICK_PROTOCOL.stride)
    hf_s = time.perf_counter() - start
    print(f"hf labels= on the same windows: ppl {hf_ppl:.3f} in {hf_s:.1f} s", flush=True)

    data = {
        "tokens_per_s": processed / quick.seconds,
        "quick_estimate_s": quick.seconds,
        "ppl": quick.ppl,
        "ppl_ci95": quick.ci95_halfwidth,
        "protocol": quick.protocol,
        "hf_labels_s": hf_s,
        "hf_labels_ppl": hf_ppl,
        "relative_difference": abs(quick.ppl - hf_ppl) / hf_ppl,
    }
    if args.full:
        full = compute_perplexity(model, tokenizer, FULL_PROTOCOL)
        covered = quick.ci95_low <= full.ppl <= quick.ci95_high
        print(
            f"full: ppl {full.ppl:.3f} +- {full.ci95_halfwidth:.3f} in {full.seconds:.1f} s; "
            f"quick interval {'contains' if covered else 'MISSES'} it",
            flush=True,
        )
        data |= {
            "full_ppl": full.ppl,
            "full_ppl_ci95": full.ci95_halfwidth,
            "full_s": full.seconds,
            "full_protocol": full.protocol,
            "quick_ci_contains_full": covered,
        }
    env = f"{loaded.description.architecture}, {model.dtype}, {loaded.device}, {threads} threads"
    print(env)
    data["environment"] = env
    print(json.dumps(data))


if __name__ == "__main__":
    main()
