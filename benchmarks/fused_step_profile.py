"""Where one decode step of the fused graph spends its time, against its
floor.

The fused int4 (or int8) graph of the default model is profiled by ONNX
Runtime's own profiler over greedy decode steps: kernel time per op type.
The matrix products' time is set against the floor of the whole step (its
weight bytes over the bandwidth measured in this run, as
benchmarks/engine_speed.py does); what the other ops take alone shows how
much of a ``1.6x floor`` budget is gone before any weight is read.

The step is timed without the profiler (median of rounds), and
the profiler's shares are applied to it: the profiler slows every node.
(Fusing gate and up into one product was measured before and did not pay:
``results/fused_gate_up_ab_xeon_avx512_cpu_2core.txt``.)

    .venv/bin/python benchmarks/fused_step_profile.py [--bits 4] [--threads 2] [--rounds 7]

Last line: JSON with the step's ms, its floor, the profiled kernel ms per op
type, and the share of the step outside the matrix products.
"""

from __future__ import annotations

import argparse
import collections
import json
import statistics
import tempfile
from pathlib import Path

from core.measure.decode_floor import bytes_read_per_token, memory_bandwidth_bytes_per_s
from core.measure.ort_decode import greedy_decode_ms

STEPS = 60  # greedy steps per timing
MATMUL_OPS = {"MatMulNBits", "MatMul", "Gemm"}


def profiled_kernel_us(model, threads: int) -> tuple[dict, float]:
    """(op type -> kernel µs per decode step, model_run µs per step) from ONNX
    Runtime's profiler over STEPS greedy steps (the prefill run left out)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.enable_profiling = True
    options.profile_file_prefix = str(Path(tempfile.mkdtemp(prefix="workbench-prof-")) / "p")
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    plain = model.session
    model.session = ort.InferenceSession(
        str(model.path), options, providers=["CPUExecutionProvider"]
    )
    try:
        greedy_decode_ms(model, STEPS)
        events = json.loads(Path(model.session.end_profiling()).read_text())
    finally:
        model.session = plain
    runs = [e for e in events if e.get("name") == "model_run"]
    decode_from = runs[1]["ts"]  # runs[0] is the prompt
    per_op = collections.Counter()
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time") and e["ts"] >= decode_from:
            per_op[e["args"].get("op_name", "?")] += e["dur"]
    steps = len(runs) - 1
    run_us = sum(r["dur"] for r in runs[1:]) / steps
    return {op: us / steps for op, us in per_op.most_common()}, run_us


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bits", type=int, default=4, choices=(4, 8))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()

    import torch

    from core.models.loading import load_model
    from core.onnx.cache import cached_onnx_export
    from core.onnx.export import MODEL_FILE
    from core.runtime.onnx.ort_model import OrtCausalLM

    torch.set_num_threads(args.threads)
    loaded = load_model("default", device="cpu")
    config, generation = loaded.model.config, loaded.model.generation_config
    folder = cached_onnx_export(loaded, weight_bits=args.bits, fused=True)
    model = OrtCausalLM(folder / MODEL_FILE, config, generation, "cpu", args.threads)
    greedy_decode_ms(model, STEPS)  # warm-up
    bandwidth = memory_bandwidth_bytes_per_s()
    times = [greedy_decode_ms(model, STEPS) for _ in range(args.rounds)]
    per_op, run_us = profiled_kernel_us(model, args.threads)
    bandwidth = max(bandwidth, memory_bandwidth_bytes_per_s())  # the best of two
    bytes_read = bytes_read_per_token(model)
    floor_ms = bytes_read / bandwidth * 1e3
    matmul_ms = sum(us for op, us in per_op.items() if op in MATMUL_OPS) / 1e3
    other_ms = sum(us for op, us in per_op.items() if op not in MATMUL_OPS) / 1e3

    print(
        f"int{args.bits} fused graph, {args.threads} threads, bandwidth {bandwidth / 1e9:.1f} GB/s"
    )
    step = statistics.median(times)
    print(f"  step {step:.2f} ms, floor {floor_ms:.2f} ms, x floor {step / floor_ms:.2f}")
    print(f"  profiled (slower): model_run {run_us / 1e3:.2f} ms/step; kernels by op (ms/step):")
    for op, us in per_op.items():
        print(f"    {op:34s} {us / 1e3:6.3f}")
    # The profiler slows every node alike, so its shares, not its times, are
    # set against the step timed without it.
    share = other_ms / (matmul_ms + other_ms)
    print(f"  matrix products {1 - share:.0%} of kernel time, everything else {share:.0%}:")
    print(
        f"  of the {step:.2f} ms step, {step * share:.2f} ms outside the matrix products "
        f"({step * share / floor_ms:.2f}x the floor alone; a 1.6x budget leaves "
        f"{1.6 * floor_ms - step * share:.2f} ms for {bytes_read / 1e6:.1f} MB of weights)"
    )
    summary = {
        "bits": args.bits, "threads": args.threads, "bandwidth_gb_s": bandwidth / 1e9,
        "step_ms": step, "floor_ms": floor_ms, "bytes_read": bytes_read,
        "profiled_matmul_kernel_ms": matmul_ms, "profiled_other_kernel_ms": other_ms,
        "other_share": share, "other_ms_in_step": step * share,
        "profiled_kernel_ms_by_op": {op: us / 1e3 for op, us in per_op.items()},
        "rounds_ms": times,
    }  # fmt: skip
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
