"""Greedy decode speed of an ONNX Runtime graph straight through
``OrtCausalLM.step``: no runner, no events, so a benchmark that compares
graphs (cache modes, rounding methods, kernels) times the graph alone."""

from __future__ import annotations

import time

import numpy as np

PROMPT = np.array([list(range(100, 164))], dtype=np.int64)  # 64 tokens


def greedy_decode_ms(model, steps: int, in_place: bool = True, prompt=PROMPT) -> float:
    """ms per greedy token over ``steps`` tokens after ``prompt``; the KV
    cache written in place (``SharedCache``) or copied each step."""
    capacity = prompt.shape[1] + steps + 1
    past = model.empty_cache(capacity=capacity) if in_place else model.empty_cache()
    out = model.step(prompt, past, np.array([prompt.shape[1] - 1]))
    token = int(out.logits[0, -1].argmax())
    start = time.perf_counter()
    for _ in range(steps):
        out = model.step(np.array([[token]], np.int64), out.present, np.array([0]))
        token = int(out.logits[0, -1].argmax())
    return (time.perf_counter() - start) / steps * 1e3
