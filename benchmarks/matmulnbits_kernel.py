"""How close ONNX Runtime's MatMulNBits kernel alone comes to the memory
floor at batch 1, on the default model's matrix shapes, side by side with
the large-copy bandwidth measured in the same run.

A whole decode step can be no nearer its floor (core.measure.decode_floor)
than the kernel that does three quarters of its work: this script says how
much of the fused graph's ratio to its floor is the kernel itself and how
much is everything around it (other ops, the step's own overhead). Each
shape is a one-node graph (weights in int4 or int8, blocks of 32/64/128,
int8 compute), timed over many back-to-back runs of one activation row, in
interleaved rounds.

    .venv/bin/python benchmarks/matmulnbits_kernel.py [--threads 2] [--rounds 5]

Last line: JSON, per configuration the best and median GB/s of weights read
and the ratio of its time to the floor (stored bytes / copy bandwidth).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from core.measure.decode_floor import memory_bandwidth_bytes_per_s
from core.onnx.nbits import ACCURACY_LEVEL
from core.runtime.onnx.ort_model import open_session

# The default model's (SmolLM2-135M) decode matrices: (in, out), with how
# many of each one step runs (30 layers; the fused graph's QKV and gate-up).
SHAPES = {
    "qkv 576x960": (576, 960, 30),
    "o 576x576": (576, 576, 30),
    "gate_up 576x3072": (576, 3072, 30),
    "down 1536x576": (1536, 576, 30),
    "head 576x49152": (576, 49152, 1),
}
RUNS_PER_TIMING = 200


def one_matmul_graph(folder: Path, k: int, n: int, bits: int, block: int, level: int) -> Path:
    """A graph of one MatMul by a random [k, n] weight, quantised to
    MatMulNBits by ONNX Runtime's own quantiser (as core.onnx.nbits does)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    weight = np.random.default_rng(0).standard_normal((k, n)).astype(np.float32) * 0.02
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        "one_matmul",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, k])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, n])],
        [numpy_helper.from_array(weight, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])
    quantizer = MatMulNBitsQuantizer(
        model, bits=bits, block_size=block, is_symmetric=True, accuracy_level=level
    )
    quantizer.process()
    path = folder / f"mm_{k}x{n}_w{bits}_b{block}_a{level}.onnx"
    onnx.save_model(quantizer.model.model, str(path))
    return path


def stored_bytes(path: Path) -> int:
    import onnx

    return sum(len(t.raw_data) for t in onnx.load(str(path)).graph.initializer)


def seconds_per_run(session, k: int) -> float:
    feed = {"x": np.random.default_rng(1).standard_normal((1, k)).astype(np.float32)}
    start = time.perf_counter()
    for _ in range(RUNS_PER_TIMING):
        session.run(None, feed)
    return (time.perf_counter() - start) / RUNS_PER_TIMING


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--blocks", type=int, nargs="*", default=[32, 64, 128])
    parser.add_argument("--bits", type=int, nargs="*", default=[4, 8])
    args = parser.parse_args()

    configs = {}
    with tempfile.TemporaryDirectory(prefix="workbench-mm-") as scratch:
        for shape, (k, n, _) in SHAPES.items():
            for bits in args.bits:
                for block in args.blocks:
                    path = one_matmul_graph(Path(scratch), k, n, bits, block, ACCURACY_LEVEL)
                    session = open_session(path, "cpu", args.threads)
                    seconds_per_run(session, k)  # warm-up (prepacking happens at load)
                    configs[(shape, bits, block)] = (session, stored_bytes(path), k)
        bandwidth = memory_bandwidth_bytes_per_s()
        times = {key: [] for key in configs}
        keys = list(configs)
        for r in range(args.rounds):
            for key in keys[r % len(keys) :] + keys[: r % len(keys)]:
                session, _, k = configs[key]
                times[key].append(seconds_per_run(session, k))
        bandwidth = max(bandwidth, memory_bandwidth_bytes_per_s())

    print(f"{args.threads} threads, copy bandwidth {bandwidth / 1e9:.1f} GB/s")
    print(f"{'shape':20s} bits block   MB    us/run   GB/s  x floor")
    summary = {"threads": args.threads, "bandwidth_gb_s": bandwidth / 1e9, "rows": []}
    for (shape, bits, block), (_, size, _) in configs.items():
        median = statistics.median(times[(shape, bits, block)])
        floor = size / bandwidth
        print(
            f"{shape:20s} {bits:4d} {block:5d} {size / 1e6:6.2f} {median * 1e6:9.1f} "
            f"{size / median / 1e9:6.1f} {median / floor:8.2f}"
        )
        summary["rows"].append(
            {"shape": shape, "bits": bits, "block": block, "bytes": size,
             "us_per_run": median * 1e6, "gb_s": size / median / 1e9,
             "ratio_to_floor": median / floor}
        )  # fmt: skip
    # Weighted as one decode step runs them: the kernel's own ratio to the floor.
    for bits in args.bits:
        for block in args.blocks:
            spent = sum(statistics.median(times[(s, bits, block)]) * SHAPES[s][2] for s in SHAPES)
            read = sum(configs[(s, bits, block)][1] * SHAPES[s][2] for s in SHAPES)
            ratio = spent / (read / bandwidth)
            print(
                f"one step's matmuls, int{bits} b{block}: {spent * 1e3:.2f} ms, x floor {ratio:.2f}"
            )
            summary[f"step_int{bits}_b{block}_ms"] = spent * 1e3
            summary[f"step_int{bits}_b{block}_x_floor"] = ratio
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
