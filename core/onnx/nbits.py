"""Weight-only int8 / int4 for an exported graph: ONNX Runtime's MatMulNBits.

``MatMulNBitsQuantizer`` (onnxruntime.quantization) replaces every MatMul
whose weight is a stored tensor, the untied LM head included
(``core.onnx.graph.untie_transposed_weights``), by a ``MatMulNBits`` node: the
weight in ``bits`` bits, one scale per block of ``BLOCK_SIZE`` input values
(symmetric round to nearest). With ``accuracy_level`` 4 the CPU provider
multiplies in int8 (MLAS quantises each block of the activation row to int8
and uses the AVX2 / AVX-512 VNNI integer dot products): on this machine's
2 cores that reads the head at 14-16 GB/s in 8 bits, against 6-10 GB/s for
the fp32 MatMul (kernel micro-measurement, 1-2 threads).

For int4 the token embedding's Gather becomes ``GatherBlockQuantized`` too
(same blocks, along the hidden axis), so the graph on disk is int4 almost
throughout; onnxruntime only quantises Gather to 4 bits, so the int8 graph
keeps its embedding in fp32 and its size says so.

Unlike dynamic or static int8 (``core.onnx.int8``, ``core.onnx.int8_static``)
no SmoothQuant is folded in: the weights are quantised per block of 32 input
values, so an outlier channel widens the scale of one block, not of a whole
row, and the activations are quantised per block of one row at a time.
"""

from __future__ import annotations

from pathlib import Path

WEIGHT_BITS = (8, 4)
# Chosen on the dev split (benchmarks/engine_choices.py): see ``SETTINGS``.
BLOCK_SIZE = 32
ACCURACY_LEVEL = 4  # int8 compute (MLAS); 0 would dequantise to fp32 per block


def nbits_settings(bits: int) -> dict:
    """Everything that decides the quantised graph (its cache key, its report)."""
    if bits not in WEIGHT_BITS:
        raise ValueError(f"MatMulNBits weights are 8 or 4 bits, not {bits}")
    return {
        "bits": bits,
        "block_size": BLOCK_SIZE,
        "symmetric": True,
        "accuracy_level": ACCURACY_LEVEL,
        "embedding": "int4 GatherBlockQuantized" if bits == 4 else "fp32",
    }


def quantize_graph_nbits(
    source: Path,
    target: Path,
    bits: int,
    block_size: int = BLOCK_SIZE,
    accuracy_level: int = ACCURACY_LEVEL,
) -> None:
    """Write ``source``'s graph with MatMulNBits weights to ``target`` (its
    weights in ``target.name + '.data'``); other block sizes and accuracy
    levels only for choosing the defaults (benchmarks/engine_choices.py)."""
    import numpy as np
    import onnx
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    settings = nbits_settings(bits)
    model = onnx.load(str(source))
    ops = ("MatMul", "Gather") if bits == 4 else ("MatMul",)
    quantizer = MatMulNBitsQuantizer(
        model,
        bits=bits,
        block_size=block_size,
        is_symmetric=settings["symmetric"],
        accuracy_level=accuracy_level,
        op_types_to_quantize=ops,
        quant_axes=(("MatMul", 0), ("Gather", 1)),
    )
    # A block of zeros (a pruned row, an expert's padding) has scale 0; the
    # quantiser writes 0 for it and numpy warns on the division it skips.
    with np.errstate(divide="ignore", invalid="ignore"):
        quantizer.process()
    onnx.save_model(
        quantizer.model.model,
        str(target),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location=f"{Path(target).name}.data",
    )
