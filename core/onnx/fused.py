"""The fused decoder graph: onnxruntime-genai's model builder, instead of our
traced export, for the runtimes that must be fast (``ort-fused*``).

Why the builder and not our trace plus fusions: the traced graph of the
default model has ~2,400 nodes per decode step (RoPE, attention, norms and
the cache update as separate small ops), and ONNX Runtime's transformer
optimizer fuses only its RMSNorms. The builder writes each layer from the
config as a dozen contrib ops: one ``GroupQueryAttention`` (rotary embedding
and the KV cache inside), one fused QKV ``MatMulNBits``, ``SkipSimplified
LayerNormalization`` for the residual adds and norms: 341 nodes for the
default model's 30 layers. It quantises with ONNX Runtime's own
``MatMulNBitsQuantizer`` (symmetric round to nearest, blocks of
``BLOCK_SIZE``, int8 compute), the head included; at int4 the decoder
layers' blocks are then replaced by GPTQ's (``core.onnx.fused_gptq``) and
the head's by int8 ones (``core.onnx.fused_head``).
Measured on the 2-core CPU (benchmarks/engine_speed.py): see the README's
engine table.

The graph keeps our graph's interface except ``logits_positions``: it returns
the logits of every new position, and ``OrtCausalLM`` picks the ones asked
for. It is built from the model's PyTorch weights saved to a temporary
folder, so it takes a configuration without passes (its own quantisation is
the point); families the builder does not write are refused in one line.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import tempfile
from pathlib import Path

from core.onnx.builder_config import configs_as_the_builder_reads
from core.onnx.fused_head import INT8
from core.onnx.fused_rope import needs_unscaled_sliding_rope, write_unscaled_sliding_rope
from core.onnx.nbits import ACCURACY_LEVEL, BLOCK_SIZE
from core.onnx.quiet import info_logs_off
from core.progress import CancelToken, Progress, ProgressSink, ignore_progress

# Families whose fused graph passes the strict fidelity gate on tiny random
# models, sliding windows included (tests/test_onnx_fused.py), model_type ->
# the family name people read. The builder also writes OLMo, Phi-1/2,
# Nemotron and SmolLM3, but not exactly here: OLMo's logits differed by 0.17,
# Phi-2's and Nemotron's partial rotary by 0.009 and 0.04 (top-1 99.4% and
# 98.4%), and SmolLM3's layers without RoPE failed to build.
FUSED_FAMILIES = {
    "llama": "Llama", "mistral": "Mistral", "qwen2": "Qwen2", "qwen3": "Qwen3", "phi3": "Phi-3",
    "gemma": "Gemma", "gemma2": "Gemma 2", "gemma3_text": "Gemma 3 (text)",
    "granite": "Granite", "ernie4_5": "ERNIE 4.5",
}  # fmt: skip
PRECISIONS = {0: "fp32", 8: "int8", 4: "int4"}
# How the builder rounds the weights (its ``algo_config``): "default" is
# ONNX Runtime's symmetric round to nearest; "k_quant" is llama.cpp's k-quant
# search (asymmetric, a scale and a minimum per block fitted by weighted least
# squares): worse at int4 on the dev split (+43.8% dev perplexity against
# +33.8%) and 0.12 points better at int8 for a build 10x longer.
# "gptq": the builder's int4 blocks of the decoder layers replaced by GPTQ's
# (core.onnx.fused_gptq, act-order, integer zero points), calibrated on the
# calibration split. Chosen per weight bits on the dev split (benchmarks/
# fused_choices.py, default model): int4 GPTQ +22.2% dev perplexity against
# +33.8% for round to nearest, at the same decode speed, so int4 takes GPTQ.
QUANT_METHODS = ("default", "k_quant", "gptq")
QUANT_METHOD = {8: "default", 4: "gptq"}
# GPTQ's calibration: windows x tokens of the calibration split (the torch
# passes' defaults, core.jobs.experiment.ExperimentSettings).
GPTQ_WINDOWS, GPTQ_LENGTH = 16, 256
# Input values per scale, by weight bits (MatMulNBits takes powers of two
# from 16). A bigger block stores fewer fp32 scales and, measured on the
# 2-core CPU (benchmarks/matmulnbits_kernel.py), makes the int8-compute
# kernel faster still: the decode step's matmuls at blocks of 32 / 64 / 128
# took 8.67 / 7.90 / 7.54 ms at int8, 4.63 / 4.22 / 3.65 at int4. But int8
# compute also rounds the activations to int8 per block, so a bigger block
# costs accuracy even at int8: dev perplexity (benchmarks/fused_choices.py
# --blocks 32 64 128) int8 +0.53 / +1.25 / +1.17%, int4 +33.8 / +49.0 /
# +81.4% (at fp32 compute, int8 b32 / b128 give +0.19 / +0.31%: most of the
# loss is the activations). Blocks of 32 stay: larger int8 blocks leave the +1% class.
BLOCK_SIZES = {8: BLOCK_SIZE, 4: BLOCK_SIZE}
# The head's bits, by the graph's weight bits: the int4 graph's head (and a
# tied embedding) in int8 blocks (core.onnx.fused_head): dev perplexity
# +21.9% with an int4 head, +12.1% with an int8 one (default model,
# benchmarks/fused_choices.py --head-bits 4 8).
HEAD_BITS = {4: INT8}


def fused_refusal(config) -> str | None:
    """One line saying why ``config``'s model has no fused graph, or None."""
    model_type = getattr(config, "model_type", "unknown")
    traced = "the traced graphs (ort, ort-w8, ort-w4) take it"
    if importlib.util.find_spec("onnxruntime_genai") is None:
        return (
            "The fused ONNX graph needs onnxruntime-genai's builder: "
            "pip install --no-deps 'onnxruntime-genai==0.18.0' (scripts/setup.sh does)."
        )
    if model_type not in FUSED_FAMILIES:
        return (
            f"The fused ONNX graph (onnxruntime-genai's builder) takes "
            f"{', '.join(FUSED_FAMILIES)}, not {model_type!r}; {traced}."
        )
    return None


def fused_settings(
    bits: int, method: str | None = None, block: int | None = None, head_bits: int | None = None
) -> dict:
    """Everything that decides the fused graph (its cache key, its report);
    ``method`` None: ``QUANT_METHOD[bits]``; ``block`` None: ``BLOCK_SIZES[bits]``;
    ``head_bits`` None: ``HEAD_BITS`` (the graph's own bits where it has none)."""
    import onnxruntime_genai

    method = method or QUANT_METHOD.get(bits, "default")

    if bits not in PRECISIONS:
        raise ValueError(f"the fused graph's weights are fp32, int8 or int4, not {bits} bits")
    if method not in QUANT_METHODS:
        raise ValueError(f"the fused graph rounds by {' or '.join(QUANT_METHODS)}, not {method!r}")
    block = block or BLOCK_SIZES.get(bits)
    if bits and (block < 16 or block & (block - 1)):
        raise ValueError(f"MatMulNBits blocks are powers of two from 16, not {block}")
    settings = {"builder": f"onnxruntime-genai {onnxruntime_genai.__version__}"}
    settings["precision"] = PRECISIONS[bits]
    if bits:
        symmetric = method == "default"
        settings |= {"block_size": block, "symmetric": symmetric}
        settings["accuracy_level"] = ACCURACY_LEVEL
        if not symmetric:  # the default's settings (and cache keys) are as before
            settings["method"] = method
        head_bits = head_bits or HEAD_BITS.get(bits, bits)
        if head_bits not in (bits, INT8):
            raise ValueError(f"the fused graph's head takes {bits} or {INT8} bits, not {head_bits}")
        if head_bits != bits:  # a head in the graph's own bits keeps the older cache keys
            settings["head_bits"] = head_bits
        if method == "gptq":
            if bits != 4:
                raise ValueError("GPTQ rounds the fused graph's int4 blocks, not int8")
            settings["calibration"] = {
                "split": "calibration", "windows": GPTQ_WINDOWS, "tokens": GPTQ_LENGTH,
            }  # fmt: skip
    return settings


def build_fused_graph(
    model,
    tokenizer,
    target: Path,
    bits: int,
    method: str | None = None,
    block: int | None = None,
    cancel: CancelToken | None = None,
    progress: ProgressSink = ignore_progress,
    head_bits: int | None = None,
) -> str:
    """Write ``model``'s fused graph (weights fp32, or int8 / int4 blocks of
    ``block`` rounded by ``method``) to ``target`` (the graph file's path;
    weights beside it in ``.data``). Returns what the builder printed (kept
    for a failure's message)."""
    from onnxruntime_genai.models.builder import create_model, parse_extra_options

    settings = fused_settings(bits, method, block, head_bits)
    method = settings.get("method", "default")
    target = Path(target)
    options = [f"filename={target.name}", "hf_token=false", "hf_remote=false"]
    # Sliding-window layers keep a full cache, as every other layer, and mask
    # by GroupQueryAttention's local_window_size: the builder's default bounded
    # cache wants one preallocated to the window and evicting in place, which
    # our runner's cache (grown or preallocated to the sequence) is not.
    options += ["windowed_kv_cache=false"]
    if bits:
        options += [f"block_size={settings['block_size']}", f"accuracy_level={ACCURACY_LEVEL}"]
        # GPTQ replaces the builder's round-to-nearest blocks afterwards.
        options += [f"algo_config={'default' if method == 'gptq' else method}"]
    printed = io.StringIO()
    with tempfile.TemporaryDirectory(prefix="workbench-fused-") as scratch:
        weights, cache = Path(scratch) / "weights", Path(scratch) / "cache"
        out = Path(scratch) / "out"
        # The builder reads a Hugging Face folder (config, safetensors, tokenizer).
        model.save_pretrained(weights, safe_serialization=True)
        tokenizer.save_pretrained(weights)  # it reads the special tokens' ids
        # It prints every step and its quantiser logs every MatMul at INFO.
        to_out, to_err = contextlib.redirect_stdout(printed), contextlib.redirect_stderr(printed)
        with info_logs_off(), to_out, to_err, configs_as_the_builder_reads():
            prepared = parse_extra_options(
                str(weights), str(weights), str(out), settings["precision"], "cpu",
                str(cache), options,
            )  # fmt: skip
            create_model(
                str(weights), str(weights), str(out), settings["precision"], "cpu",
                str(cache), **prepared,
            )  # fmt: skip
        if needs_unscaled_sliding_rope(model.config):
            write_unscaled_sliding_rope(out / target.name, model.config)
        if method == "gptq":
            from core.onnx.fused_gptq import round_by_gptq
            from core.passes.calibration import calibration_windows

            windows = calibration_windows(tokenizer, GPTQ_WINDOWS, GPTQ_LENGTH)
            block = settings["block_size"]
            round_by_gptq(model, out / target.name, windows, block, cancel, progress)
        if "head_bits" in settings:
            from core.onnx.fused_head import write_int8_head

            progress(Progress("Rounding the head to int8 blocks", 0.95))
            write_int8_head(model, out / target.name, settings["block_size"], ACCURACY_LEVEL)
        target.parent.mkdir(parents=True, exist_ok=True)
        for name in (target.name, f"{target.name}.data"):
            (out / name).replace(target.parent / name)
    return printed.getvalue()
