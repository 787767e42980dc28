"""int8 weights for an exported graph: onnxruntime's dynamic quantisation.

``quantize_dynamic`` stores every MatMul/Gemm weight in 8 bits per output
channel (uint8 with a zero point per channel: ``WEIGHT_FORMAT``), and
quantises activations per tensor on the fly
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
# +61% perplexity without it (benchmarks/ort_vs_torch.py, 10 quick windows;
# on dev with uint8 weights 52.22 against 38.11 with it).
# The folding is exact in float; it only moves range from activations into
# weights, which are quantised per channel.
SMOOTH_ALPHA = 0.5

# How weights are stored, which decides the integer kernel ONNX Runtime's CPU
# provider runs: "s8" int8 weights against uint8 activations (U8S8), "s8-7bit"
# the same with weights in [-64, 63] (``reduce_range``), "u8" uint8 weights
# (U8U8). On a CPU without AVX-512 VNNI / AVX-VNNI (this AVX2 machine) MLAS's
# U8S8 kernel multiplies with VPMADDUBSW, which adds two u8 x s8 products into
# a saturating int16: 255 x 127 x 2 overflows it, and SmolLM2's outlier
# activations hit that often (onnxruntime's quantization docs name it). On the
# default model (report split, quick protocol; fp32 ppl 23.26) dynamic s8
# measured ppl 93.8 with SmoothQuant, 11.2 million without; s8-7bit 27.3, u8
# 27.2. Chosen on the dev split (benchmarks/ort_static_int8.py --dev-choices;
# quick protocol, fp32 dev ppl 32.05): with SmoothQuant s8 92.62, s8-7bit
# 38.34, u8 38.11; without it 9979804 / 54.20 / 52.22. uint8 weights are
# asymmetric per channel, so they keep all 8 bits where 7-bit int8 keeps 7.
WEIGHT_FORMATS = ("s8", "s8-7bit", "u8")
WEIGHT_FORMAT = "u8"


def weight_options(weight_format: str) -> dict:
    """``weight_type`` and ``reduce_range`` for onnxruntime's quantisers."""
    from onnxruntime.quantization import QuantType

    if weight_format not in WEIGHT_FORMATS:
        raise ValueError(f"unknown weight format {weight_format!r}; one of {WEIGHT_FORMATS}")
    return {
        "weight_type": QuantType.QUInt8 if weight_format == "u8" else QuantType.QInt8,
        "reduce_range": weight_format == "s8-7bit",
    }


def smoothed_copy(model, tokenizer, cancel, alpha: float = SMOOTH_ALPHA):
    """A copy of ``model`` with SmoothQuant scales folded in (the model the
    int8 graph is made from and checked against); the original is untouched."""
    import copy

    from core.passes.calibration import calibration_windows
    from core.passes.smooth_quant import smooth

    smoothed = copy.deepcopy(model)
    smooth(smoothed, calibration_windows(tokenizer), alpha, cancel)
    return smoothed


def quantize_graph(
    source: Path, target: Path, weight_format: str = WEIGHT_FORMAT, exclude: tuple[str, ...] = ()
) -> None:
    """Write the int8 version of the graph at ``source`` to ``target``
    (weights in ``target.name + '.data'``); nodes named in ``exclude`` stay float."""
    from onnxruntime.quantization import quantize_dynamic

    quantize_dynamic(
        source,
        target,
        op_types_to_quantize=QUANTIZED_OPS,
        per_channel=True,
        nodes_to_exclude=list(exclude),
        use_external_data_format=True,
        **weight_options(weight_format),
        extra_options={"MatMulConstBOnly": True},
    )
