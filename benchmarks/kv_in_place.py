"""Decode speed of the fused graphs (``ort-fused-w4`` / ``-w8``) on the KV cache
written in place (``SharedCache``: GroupQueryAttention's shared past/present
buffers) against the copied cache (a new present each step), side by side in
one process, in interleaved rounds.

    .venv/bin/python benchmarks/kv_in_place.py
"""

from __future__ import annotations

import statistics

import torch

from core.measure.ort_decode import PROMPT, greedy_decode_ms
from core.models.loading import load_model
from core.onnx.cache import cached_onnx_export
from core.onnx.export import MODEL_FILE
from core.runtime.onnx.ort_model import OrtCausalLM

THREADS = 2
STEPS = 128
ROUNDS = 6


def decode_ms(model: OrtCausalLM, in_place: bool) -> float:
    return greedy_decode_ms(model, STEPS, in_place)


def main() -> None:
    torch.set_num_threads(THREADS)
    loaded = load_model("default", device="cpu")
    config, generation = loaded.model.config, loaded.model.generation_config
    for bits in (4, 8):
        folder = cached_onnx_export(loaded, weight_bits=bits, fused=True)
        model = OrtCausalLM(folder / MODEL_FILE, config, generation, "cpu", THREADS)
        decode_ms(model, False), decode_ms(model, True)  # warm-up
        times: dict[bool, list[float]] = {False: [], True: []}
        for round_ in range(ROUNDS):  # alternate which goes first
            for in_place in (False, True) if round_ % 2 else (True, False):
                times[in_place].append(decode_ms(model, in_place))
        copied, in_place = (statistics.median(times[k]) for k in (False, True))
        print(
            f"int{bits} fused, {STEPS} tokens after a {PROMPT.shape[1]}-token prompt, "
            f"{ROUNDS} interleaved rounds, {THREADS} threads: copied {copied:.2f} ms/token "
            f"(rounds {min(times[False]):.2f}-{max(times[False]):.2f}), in place {in_place:.2f} "
            f"({min(times[True]):.2f}-{max(times[True]):.2f}), ratio {copied / in_place:.3f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
