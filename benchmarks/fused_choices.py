"""Choosing how the fused graph (core.onnx.fused) rounds its int8 / int4
weights, on the dev split: ONNX Runtime's symmetric round to nearest
("default") against llama.cpp's k-quant search ("k_quant", asymmetric), and
how many input values share a scale (``--blocks``).
Quality is quick-protocol perplexity on the dev split (never the report
split); speed is decode ms/token on the in-place KV cache, each graph timed
in interleaved rounds in this one process.

    .venv/bin/python benchmarks/fused_choices.py [--model default] [--rounds 5]
        [--methods default] [--blocks 32 64 128] [--head-bits 4 8]

Last line: one JSON object, per variant its dev perplexity (and change
against the fp32 model), its stored bytes and its decode ms/token.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from itertools import product
from pathlib import Path

import torch

from core.evaluate.perplexity import PerplexityProtocol, compute_perplexity
from core.measure.decode_floor import bytes_read_per_token
from core.measure.ort_decode import greedy_decode_ms
from core.models.loading import load_model
from core.onnx.fused import QUANT_METHODS, build_fused_graph, fused_settings
from core.runtime.onnx.ort_model import OrtCausalLM

THREADS = 2
STEPS = 128


def decode_ms(model: OrtCausalLM) -> float:
    return greedy_decode_ms(model, STEPS)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--bits", type=int, nargs="*", default=[4, 8])
    parser.add_argument("--methods", nargs="*", choices=QUANT_METHODS, default=list(QUANT_METHODS))
    parser.add_argument(
        "--blocks", type=int, nargs="*", default=[None], help="input values per scale"
    )
    parser.add_argument(
        "--head-bits", type=int, nargs="*", default=[None], choices=[4, 8],
        help="the int4 graph's head (and tied embedding) in int4 or int8 blocks",
    )  # fmt: skip
    args = parser.parse_args()
    torch.set_num_threads(THREADS)
    loaded = load_model(args.model, device="cpu")
    dev = PerplexityProtocol(split="dev")
    base = compute_perplexity(loaded.model, loaded.tokenizer, dev).ppl
    print(f"fp32 (PyTorch): dev ppl {base:.3f}", flush=True)
    config, generation = loaded.model.config, loaded.model.generation_config
    models, results = {}, {"fp32_dev_ppl": base, "variants": {}}
    with tempfile.TemporaryDirectory(prefix="workbench-fused-choices-") as tmp:
        for bits in args.bits:
            for method, block, head in product(args.methods, args.blocks, args.head_bits):
                if method == "gptq" and bits != 4:
                    continue  # GPTQ rounds int4 blocks only
                settings = fused_settings(bits, method, block, head if bits == 4 else None)
                block = settings["block_size"]
                head_bits = settings.get("head_bits", bits)
                name = f"int{bits}-{method}-b{block}" + (f"-head{head_bits}" if bits == 4 else "")
                if name in models:
                    continue  # --head-bits asks nothing of an int8 graph
                path = Path(tmp) / name / "model.onnx"
                start = time.perf_counter()
                build_fused_graph(
                    loaded.model, loaded.tokenizer, path, bits, method, block, head_bits=head_bits
                )
                built_s = time.perf_counter() - start
                model = OrtCausalLM(path, config, generation, "cpu", THREADS)
                ppl = compute_perplexity(model, loaded.tokenizer, dev).ppl
                results["variants"][name] = {
                    "dev_ppl": ppl,
                    "dev_ppl_delta_pct": (ppl / base - 1) * 100,
                    "bytes_read_per_token": bytes_read_per_token(model),
                    "build_s": built_s,
                }
                print(
                    f"{name}: built in {built_s:.0f} s, dev ppl {ppl:.3f} "
                    f"({(ppl / base - 1) * 100:+.2f}%)",
                    flush=True,
                )
                models[name] = model
        for model in models.values():
            decode_ms(model)  # warm-up
        times = {name: [] for name in models}
        names = list(models)
        for r in range(args.rounds):
            for name in names[r % len(names) :] + names[: r % len(names)]:
                times[name].append(decode_ms(models[name]))
    print(f"decode, {STEPS} tokens after a 64-token prompt, {args.rounds} interleaved rounds:")
    for name, values in times.items():
        median = statistics.median(values)
        results["variants"][name]["decode_ms_per_token"] = median
        results["variants"][name]["decode_ms_range"] = [min(values), max(values)]
        row = results["variants"][name]
        print(
            f"  {name:22s} {median:6.2f} ms/token ({min(values):.2f}-{max(values):.2f}), "
            f"{row['bytes_read_per_token'] / 1e6:6.1f} MB/step, "
            f"dev ppl {row['dev_ppl_delta_pct']:+.2f}%"
        )
    print(json.dumps(results))


if __name__ == "__main__":
    main()
