"""Our runner's decode speed against Hugging Face `model.generate`, side by side.

Same model, dtype, threads, prompt and greedy decoding; stop tokens disabled
so both produce exactly N tokens. Both are timed the same way, end to end:
decode ms/token = (T(prompt -> N tokens) - T(prompt -> 1 token)) / (N - 1),
medians over interleaved rounds (A B A B ...) so drift hits both alike.
Also measures memory bandwidth (large copies and reads) and prints the floor that
it implies: weight bytes / bandwidth per token.

    .venv/bin/python benchmarks/decode_speed.py [--model default] [--threads N]

Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from core.measure.decode_floor import memory_bandwidth_bytes_per_s
from core.measure.speed import bench_prompt_ids
from core.models.description import unique_tensors_of
from core.models.loading import load_model
from core.runtime.device import set_threads, synchronize
from core.runtime.torch_runner import generate_steps


def time_ours(model, ids, n: int) -> float:
    synchronize(ids.device)
    start = time.perf_counter()
    for _ in generate_steps(model, ids, n):
        pass
    return time.perf_counter() - start


def time_hf(model, ids, n: int) -> float:
    synchronize(ids.device)
    start = time.perf_counter()
    with torch.inference_mode():
        model.generate(
            ids,
            max_new_tokens=n,
            min_new_tokens=n,
            do_sample=False,
            eos_token_id=None,
            pad_token_id=0,
        )
    synchronize(ids.device)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--prompt-tokens", type=int, default=64)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    threads = set_threads(args.threads)
    loaded = load_model(args.model)
    model, n = loaded.model, args.new_tokens
    ids = bench_prompt_ids(loaded, args.prompt_tokens)
    model.generation_config.eos_token_id = None  # every run makes exactly n tokens

    methods = {"ours": time_ours, "hf": time_hf}
    for fn in methods.values():  # warm-up, not counted
        fn(model, ids, 4)
    per_token: dict[str, list[float]] = {name: [] for name in methods}
    for r in range(args.rounds):
        for name, fn in methods.items():
            full, first = fn(model, ids, n), fn(model, ids, 1)
            per_token[name].append((full - first) / (n - 1) * 1e3)
        print(
            f"round {r + 1}: ours {per_token['ours'][-1]:.2f} ms/token, "
            f"hf {per_token['hf'][-1]:.2f} ms/token",
            flush=True,
        )

    ours = statistics.median(per_token["ours"])
    hf = statistics.median(per_token["hf"])
    weight_bytes = sum(t.nbytes for t in unique_tensors_of(model.parameters()))
    bandwidth = memory_bandwidth_bytes_per_s()
    floor_ms = weight_bytes / bandwidth * 1e3
    env = f"{loaded.description.architecture}, {model.dtype}, {loaded.device}, {threads} threads"
    print(f"\n{env}; prompt {ids.shape[1]} tokens, {n} new tokens, {args.rounds} rounds")
    print(f"ours: {ours:.2f} ms/token ({1e3 / ours:.1f} tokens/s)")
    print(f"hf generate: {hf:.2f} ms/token ({1e3 / hf:.1f} tokens/s)")
    print(f"ratio hf/ours: {hf / ours:.3f} (>= 1.0: we are not slower)")
    print(
        f"bandwidth {bandwidth / 1e9:.1f} GB/s, weights {weight_bytes / 1e6:.0f} MB -> "
        f"floor {floor_ms:.2f} ms/token; ours is {ours / floor_ms:.2f}x the floor"
    )
    print(
        json.dumps(
            {
                "ours_ms_per_token": round(ours, 3),
                "hf_ms_per_token": round(hf, 3),
                "ratio": round(hf / ours, 4),
                "floor_ms_per_token": round(floor_ms, 3),
                "ours_over_floor": round(ours / floor_ms, 3),
                "bandwidth_gb_s": round(bandwidth / 1e9, 2),
                "weight_bytes": weight_bytes,
                "device": str(loaded.device),
                "threads": threads,
                "dtype": str(model.dtype).removeprefix("torch."),
                "new_tokens": n,
                "rounds": args.rounds,
            }
        )
    )


if __name__ == "__main__":
    main()
