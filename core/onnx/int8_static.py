"""Static (calibrated) int8 for an exported graph: onnxruntime's ``quantize_static``.

Beside dynamic int8 (``core.onnx.int8``), which measures each activation's
range on the fly, static int8 fixes every activation's scale and zero point
ahead of time from calibration text, so the graph holds QuantizeLinear /
DequantizeLinear pairs (QDQ format) around each weight MatMul and no range
is computed at run time.

- What is quantised: every MatMul/Gemm whose weight is a stored tensor (the
  projections; the LM head stays fp32, ``HEAD_IN_FP32``), weights per output channel
  (``per_channel=True``), activations per tensor. MatMuls of two activations
  (attention's Q.K^T and P.V) stay float, as in dynamic int8
  (``MatMulConstBOnly``), and MatMul outputs are not re-quantised: they feed
  float ops (RoPE, softmax, the residual sum), so a QDQ pair there would only
  add error.
- Calibration reads the calibration split only (``calibration_windows``):
  each window runs as the graph is used, one prefill from an empty cache and
  then ``DECODE_STEPS`` single-token steps on the cache that prefill left
  (computed by the float graph), so the ranges cover both paths.
- Methods (``CalibrationMethod``): MinMax (the observed range), Entropy (the
  range that minimises the KL divergence of the quantised histogram) and
  Percentile (the 99.999th percentile of |x|). The histogram methods keep
  every calibrated tensor of a batch in memory, so calibration collects one
  graph run at a time (``CalibStridedMinMax``; a prefill's tensors and a
  decode step's have different shapes and cannot be stacked anyway) and the
  window count is bounded.
"""

from __future__ import annotations

import contextlib
import io
import logging
from pathlib import Path

import numpy as np

from core.progress import CancelToken

# The calibration methods, by the name a runtime key and the cache use.
CALIBRATION_METHODS = ("minmax", "entropy", "percentile")
# Chosen on the dev split (benchmarks/ort_static_int8.py --dev-choices; SmolLM2,
# quick protocol, fp32 dev ppl 32.05): with SmoothQuant, Entropy 37.94, MinMax
# 38.56, Percentile 52.58 (its symmetric 99.999th percentile clips the outlier
# activations the model needs); without SmoothQuant 55.34 / 60.66 / 95.34.
DEFAULT_CALIBRATION = "entropy"
CALIBRATION_WINDOWS = 8  # of CALIBRATION_LENGTH tokens, from the calibration split
CALIBRATION_LENGTH = 256
DECODE_STEPS = 4  # single-token steps after each window's prefill
QUANTIZED_OPS = ["MatMul", "Gemm"]
# SmoothQuant folded into the model before tracing (None: not smoothed), the
# same alpha as dynamic int8's. Chosen on the dev split (above).
SMOOTH_ALPHA: float | None = 0.5
# The LM head left in fp32 (its weight stays float): dev ppl 37.58 against
# 37.94 with the head quantised (Entropy, SmoothQuant). Its cost is bytes: the
# head is 49152 x 576 on the default model, 113 MB in fp32 against 28 MB.
HEAD_IN_FP32 = True
# The weights' format (core.onnx.int8.WEIGHT_FORMATS: the int8 kernel, and its
# saturation on CPUs without VNNI), dynamic int8's dev choice: static int8 runs
# the same integer kernels.
WEIGHT_FORMAT = "u8"
STATIC_VERSION = 1  # bump when the quantised graph's recipe changes (part of the cache key)


def static_settings(method: str) -> dict:
    """Everything that decides a static int8 graph besides the model: the
    export cache's key holds it, so each method (and setting) has its own entry."""
    return {
        "version": STATIC_VERSION,
        "method": method,
        "windows": CALIBRATION_WINDOWS,
        "length": CALIBRATION_LENGTH,
        "decode_steps": DECODE_STEPS,
        "smooth_alpha": SMOOTH_ALPHA,
        "weights": WEIGHT_FORMAT,
        "head_in_fp32": HEAD_IN_FP32,
        "split": "calibration",
    }


def method_enum(method: str):
    """onnxruntime's CalibrationMethod for one of CALIBRATION_METHODS."""
    from onnxruntime.quantization import CalibrationMethod

    names = {"minmax": "MinMax", "entropy": "Entropy", "percentile": "Percentile"}
    if method not in names:
        raise ValueError(
            f"unknown calibration method {method!r}; choose one of {', '.join(CALIBRATION_METHODS)}"
        )
    return getattr(CalibrationMethod, names[method])


class GraphCalibrationReader:
    """Feeds ``quantize_static`` the graph's own inputs for each calibration
    window: a prefill (all positions' logits, so the LM head's input is
    calibrated on every token), then ``decode_steps`` single-token steps whose
    past keys and values come from the float graph. One window is
    ``1 + decode_steps`` items; ``set_range`` selects items by index, which is
    how ``CalibStridedMinMax`` collects one item at a time."""

    def __init__(self, fp32_path: Path, config, windows, decode_steps: int, cancel: CancelToken):
        from core.runtime.onnx.ort_model import OrtCausalLM

        self.graph = OrtCausalLM(Path(fp32_path), config, None, device="cpu")
        self.windows = [w.view(1, -1).numpy().astype(np.int64) for w in windows]
        self.decode_steps = decode_steps
        self.cancel = cancel
        self.per_window = 1 + decode_steps
        self.windows_read: list[int] = []  # which windows the calibration ran (for tests)
        self._items: tuple[int, list[dict]] | None = None
        self.set_range(0, len(self))

    def __len__(self) -> int:
        return len(self.windows) * self.per_window

    def set_range(self, start_index: int, end_index: int) -> None:
        self._next, self._end = start_index, min(end_index, len(self))

    def get_next(self) -> dict | None:
        if self._next >= self._end:
            return None
        self.cancel.raise_if_cancelled()
        window, item = divmod(self._next, self.per_window)
        self._next += 1
        if self._items is None or self._items[0] != window:
            self._items = (window, self._window_items(self.windows[window]))
            self.windows_read.append(window)
        return self._items[1][item]

    def _inputs(self, ids: np.ndarray, past: list[np.ndarray], positions: np.ndarray) -> dict:
        from core.runtime.onnx.interface import ATTENTION_MASK, INPUT_IDS, LOGITS_POSITIONS

        feed = {INPUT_IDS: ids, LOGITS_POSITIONS: positions}
        if ATTENTION_MASK in self.graph._input_names:
            feed[ATTENTION_MASK] = np.ones((1, past[0].shape[2] + ids.shape[1]), dtype=np.int64)
        return feed | dict(zip(self.graph._past_names, past, strict=True))

    def _window_items(self, ids: np.ndarray) -> list[dict]:
        steps = min(self.decode_steps, ids.shape[1] - 1)
        start = ids.shape[1] - steps
        past = [value.numpy() for value in self.graph.empty_cache()]
        items = [self._inputs(ids[:, :start], past, np.arange(start, dtype=np.int64))]
        out = self.graph.step(ids[:, :start], self.graph.empty_cache(), np.array([start - 1]))
        for t in range(start, ids.shape[1]):
            past = [value.numpy() for value in out.present]
            items.append(self._inputs(ids[:, t : t + 1], past, np.array([0], dtype=np.int64)))
            if t + 1 < ids.shape[1]:
                out = self.graph.step(ids[:, t : t + 1], out.present, np.array([0]))
        return items


def weight_matmuls(path: Path) -> list[str]:
    """Names of the MatMul/Gemm nodes whose second input is a stored weight."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    weights = {t.name for t in graph.initializer}
    return [
        node.name
        for node in graph.node
        if node.op_type in QUANTIZED_OPS and len(node.input) > 1 and node.input[1] in weights
    ]


def head_matmul(path: Path) -> str:
    """The LM head's MatMul: the graph's last MatMul with a stored weight (the
    logits are the graph's last computation; Gemma 2's soft-capping follows
    it but holds no MatMul)."""
    return weight_matmuls(path)[-1]


def quantize_graph_static(
    source: Path,
    target: Path,
    config,
    tokenizer,
    method: str,
    cancel: CancelToken,
    windows=None,
    exclude: tuple[str, ...] | None = None,
    weight_format: str = WEIGHT_FORMAT,
) -> GraphCalibrationReader:
    """Write the static int8 (QDQ) version of the graph at ``source`` to
    ``target`` (weights in ``target.name + '.data'``), calibrated with
    ``method`` on ``windows`` (default: the calibration split's). Nodes named
    in ``exclude`` stay float (default: the LM head when ``HEAD_IN_FP32``).
    Returns the reader, which says what calibration read."""
    from core.passes.calibration import calibration_windows

    if windows is None:
        windows = calibration_windows(tokenizer, CALIBRATION_WINDOWS, CALIBRATION_LENGTH)
    reader = GraphCalibrationReader(source, config, windows, DECODE_STEPS, cancel)
    if exclude is None:
        exclude = (head_matmul(source),) if HEAD_IN_FP32 else ()
    nodes = [name for name in weight_matmuls(source) if name not in exclude]
    # The library prints its progress; keep stdout for the CLI's own output (--json).
    with contextlib.redirect_stdout(io.StringIO()), _quiet_root_logger():
        _quantize(source, target, reader, nodes, method, weight_format)
    return reader


def _quantize(source: Path, target: Path, reader, nodes: list[str], method, weights) -> None:
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    from core.onnx.int8 import weight_options

    quantize_static(
        source,
        target,
        reader,
        quant_format=QuantFormat.QDQ,
        op_types_to_quantize=QUANTIZED_OPS,
        nodes_to_quantize=nodes,
        per_channel=True,
        activation_type=QuantType.QUInt8,
        calibrate_method=method_enum(method),
        use_external_data_format=True,
        extra_options={
            # One graph run's tensors at a time: bounded memory, and the histogram
            # methods cannot stack a prefill's tensors with a decode step's.
            "CalibStridedMinMax": 1,
            "OpTypesToExcludeOutputQuantization": QUANTIZED_OPS,
        },
        **weight_options(weights),
    )


@contextlib.contextmanager
def _quiet_root_logger():
    """quantize_static logs a pre-processing hint on the root logger at WARNING."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)
