"""How close ONNX Runtime's MatMulNBits kernel alone comes to the memory
floor at batch 1, against the whole fused decode step, side by side in one
run with the bandwidth measured the way benchmarks/engine_speed.py does.

The matmuls of one decode step of the default model (30 layers of fused QKV,
O, gate-up and down, then the head), with random weights, are chained in one
graph: one ``run`` per step, every weight read once per step, so they stream
from memory as in a real decode (a single matrix run again and again would
stay in the cache and beat any floor). The same step of the real fused graph
(``ort-fused-w4`` / ``-w8``: attention, norms and the KV cache too) is timed
in the same interleaved rounds. The matmul chain's ratio to its floor is the
kernel's own distance from the floor; the difference between the two times
is everything around the kernel.

    .venv/bin/python benchmarks/matmulnbits_kernel.py [--threads 2] [--rounds 5]

``--levels 4 1`` adds fp32 compute (accuracy level 1) beside int8 compute.

Last line: JSON with, per bits, block and level, the chain's ms per step, bytes and
ratio to the floor, and the fused graph's ms per step.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from core.measure.decode_floor import memory_bandwidth_bytes_per_s
from core.measure.ort_decode import greedy_decode_ms
from core.onnx.nbits import ACCURACY_LEVEL, BLOCK_SIZE
from core.runtime.onnx.ort_model import open_session

# The default model's (SmolLM2-135M) decode matrices as the fused graph has
# them: (in, out) per layer, 30 layers, then the head.
HIDDEN, LAYERS = 576, 30
LAYER = [("qkv", 576, 960), ("o", 576, 576), ("gate_up", 576, 3072), ("down", 1536, 576)]
HEAD = ("head", 576, 49152)
RUNS = 50  # steps per timing


def matmul_chain(folder: Path, bits: int, block: int, level: int = ACCURACY_LEVEL) -> Path:
    """One graph: x [1, 576] through every matmul of a decode step in turn
    (an output wider than the next input is sliced to it), random weights
    quantised to MatMulNBits by ONNX Runtime's own quantiser."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    rng = np.random.default_rng(0)
    nodes, weights, current = [], [], "x"
    shapes = [(f"{name}{i}", k, n) for i in range(LAYERS) for name, k, n in LAYER] + [HEAD]
    for index, (name, k, n) in enumerate(shapes):
        weight = f"w_{name}"
        weights.append(numpy_helper.from_array(rng.standard_normal((k, n), np.float32), weight))
        out = f"y_{name}"
        nodes.append(helper.make_node("MatMul", [current, weight], [out], name=name))
        following = shapes[index + 1][1] if index + 1 < len(shapes) else n
        if following != n:  # slice to the next matmul's input width
            ends = numpy_helper.from_array(np.array([following], np.int64), f"end_{name}")
            starts = numpy_helper.from_array(np.array([0], np.int64), f"start_{name}")
            axes = numpy_helper.from_array(np.array([1], np.int64), f"axis_{name}")
            weights += [starts, ends, axes]
            sliced = f"s_{name}"
            nodes.append(
                helper.make_node(
                    "Slice",
                    [out, starts.name, ends.name, axes.name],
                    [sliced],
                    name=f"slice_{name}",
                )
            )
            out = sliced
        current = out
    graph = helper.make_graph(
        nodes,
        "decode_step_matmuls",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, HIDDEN])],
        [helper.make_tensor_value_info(current, TensorProto.FLOAT, [1, HEAD[2]])],
        weights,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)], ir_version=10)
    quantizer = MatMulNBitsQuantizer(
        model, bits=bits, block_size=block, is_symmetric=True, accuracy_level=level
    )
    logging.disable(logging.INFO)  # it logs every MatMul
    quantizer.process()
    logging.disable(logging.NOTSET)
    path = folder / f"chain_w{bits}_b{block}_a{level}.onnx"
    onnx.save_model(
        quantizer.model.model, str(path), save_as_external_data=True, location=f"{path.name}.data"
    )
    return path


def chain_bytes(path: Path) -> int:
    """Weight bytes of the chain's MatMulNBits (what a step reads)."""
    from core.measure.decode_floor import _graph_bytes_read

    return _graph_bytes_read(path)


def chain_step_ms(session) -> float:
    feed = {"x": np.random.default_rng(1).standard_normal((1, HIDDEN)).astype(np.float32)}
    start = time.perf_counter()
    for _ in range(RUNS):
        session.run(None, feed)
    return (time.perf_counter() - start) / RUNS * 1e3


def fused_step_ms(model) -> float:
    """ms per greedy decode step of the real fused graph (in-place cache)."""
    return greedy_decode_ms(model, RUNS)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--blocks", type=int, nargs="*", default=[BLOCK_SIZE, 64, 128])
    parser.add_argument("--bits", type=int, nargs="*", default=[4, 8])
    parser.add_argument(
        "--levels", type=int, nargs="*", default=[ACCURACY_LEVEL], help="4: int8 compute, 1: fp32"
    )
    args = parser.parse_args()

    import torch

    from core.models.loading import load_model
    from core.onnx.cache import cached_onnx_export
    from core.onnx.export import MODEL_FILE
    from core.runtime.onnx.ort_model import OrtCausalLM

    torch.set_num_threads(args.threads)
    loaded = load_model("default", device="cpu")
    config, generation = loaded.model.config, loaded.model.generation_config
    timed, sizes = {}, {}
    with tempfile.TemporaryDirectory(prefix="workbench-chain-") as scratch:
        for bits in args.bits:
            folder = cached_onnx_export(loaded, weight_bits=bits, fused=True)
            model = OrtCausalLM(folder / MODEL_FILE, config, generation, "cpu", args.threads)
            timed[f"fused int{bits} b{BLOCK_SIZE}"] = lambda m=model: fused_step_ms(m)
            for block in args.blocks:
                for level in args.levels:
                    path = matmul_chain(Path(scratch), bits, block, level)
                    session = open_session(path, "cpu", args.threads)
                    name = f"matmuls int{bits} b{block} a{level}"
                    timed[name] = lambda s=session: chain_step_ms(s)
                    sizes[name] = chain_bytes(path)
        for run in timed.values():  # warm-up
            run()
        bandwidth = memory_bandwidth_bytes_per_s()
        times = {name: [] for name in timed}
        names = list(timed)
        for r in range(args.rounds):
            for name in names[r % len(names) :] + names[: r % len(names)]:
                times[name].append(timed[name]())
        bandwidth = max(bandwidth, memory_bandwidth_bytes_per_s())

    print(f"{args.threads} threads, bandwidth (best large copy or read) {bandwidth / 1e9:.1f} GB/s")
    summary = {"threads": args.threads, "bandwidth_gb_s": bandwidth / 1e9, "rows": {}}
    for name in names:
        median = statistics.median(times[name])
        row = {"ms_per_step": median, "range": [min(times[name]), max(times[name])]}
        line = f"  {name:22s} {median:6.2f} ms/step ({min(times[name]):.2f}-{max(times[name]):.2f})"
        if name in sizes:
            floor_ms = sizes[name] / bandwidth * 1e3
            row |= {"bytes": sizes[name], "floor_ms": floor_ms, "ratio_to_floor": median / floor_ms}
            line += f", {sizes[name] / 1e6:6.1f} MB, floor {floor_ms:.2f} ms"
            line += f", x floor {median / floor_ms:.2f}"
        summary["rows"][name] = row
        print(line)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
