"""int8 weights for an exported graph: onnxruntime's dynamic quantisation.

``quantize_dynamic`` stores every MatMul/Gemm weight as int8, per output
channel and symmetric, and quantises activations per tensor on the fly
(``DynamicQuantizeLinear`` + ``MatMulInteger``, which the CPU provider fuses
into its int8 GEMM at session load). Only MatMuls whose weight is a stored
tensor are touched, which is why the export stores a tied LM head untied and
pre-transposed (``core.onnx.graph.untie_transposed_weights``): left
tied, the largest MatMul of a small model stays fp32 and an extra transpose
of it runs every step.
"""

from __future__ import annotations

from pathlib import Path

QUANTIZED_OPS = ["MatMul", "Gemm"]

# SmoothQuant folded into the fp32 model before it is traced for int8: the
# activations are quantised per tensor, and SmolLM2's outlier channels cost
# +61% perplexity without it (benchmarks/ort_vs_torch.py, 10 quick windows).
# The folding is exact in float; it only moves range from activations into
# weights, which are quantised per channel.
SMOOTH_ALPHA = 0.5


def smoothed_copy(model, tokenizer, cancel, alpha: float = SMOOTH_ALPHA):
    """A copy of ``model`` with SmoothQuant scales folded in (the model the
    int8 graph is made from and checked against); the original is untouched."""
    import copy

    from core.passes.calibration import calibration_windows
    from core.passes.smooth_quant import smooth

    smoothed = copy.deepcopy(model)
    smooth(smoothed, calibration_windows(tokenizer), alpha, cancel)
    return smoothed


def quantize_graph(source: Path, target: Path) -> None:
    """Write the int8 version of the graph at ``source`` to ``target``
    (weights in ``target.name + '.data'``)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(
        source,
        target,
        op_types_to_quantize=QUANTIZED_OPS,
        per_channel=True,
        reduce_range=False,
        weight_type=QuantType.QInt8,
        use_external_data_format=True,
        extra_options={"MatMulConstBOnly": True},
    )
