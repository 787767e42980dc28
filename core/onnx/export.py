"""The ONNX export job: graph, optional int8, fidelity check, or nothing.

``export_onnx`` writes into ``out_dir`` (which must not hold anything yet):
``model.onnx`` + ``model.onnx.data`` (the graph of ``core.onnx.graph``,
int8 when asked: dynamic, ``core.onnx.int8``, or static with a calibration
method, ``core.onnx.int8_static``), the model's ``config.json`` / ``generation_config.json``,
its tokenizer, and ``onnx_export.json`` (what was checked and measured). The
folder then loads with ``core.models.loading.load_model`` as an ONNX Runtime model.

After writing, the graph runs in ONNX Runtime beside the PyTorch model on real
text (``core.onnx.fidelity``). An export that does not match, or that
fails or is cancelled on the way, raises a WorkbenchError and leaves no files.
"""

from __future__ import annotations

import copy
import json
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from core.errors import ExportFailedError, UnsupportedModelError, WorkbenchError
from core.onnx.fidelity import DECODE_STEPS, OnnxFidelity, check_windows, compare_logits
from core.onnx.graph import export_graph
from core.progress import CancelToken, Progress, ProgressSink, ignore_progress
from core.runtime.onnx.families import exact_positions, export_refusal
from core.runtime.onnx.ort_errors import is_ort_error, ort_reason

MODEL_FILE = "model.onnx"
REPORT_FILE = "onnx_export.json"


@dataclass(frozen=True)
class OnnxExportResult:
    folder: Path
    model_file: Path
    int8: bool  # quantised (dynamic or static int8, or weight-only: ``weight_bits``)
    bytes_on_disk: int  # the graph and its weights
    untied_weights: int  # transposed (tied) weights stored on their own
    fidelity: OnnxFidelity
    seconds: float
    calibration: str = ""  # static int8: the calibration method
    weight_bits: int = 0  # weight-only int8 / int4 (MatMulNBits, core.onnx.nbits)
    fused: bool = False  # written by onnxruntime-genai's builder (core.onnx.fused)
    # The graph matches the model up to this many positions and refuses more
    # (long-context RoPE's original context: families.exact_positions), else None.
    exact_positions: int | None = None

    def to_dict(self) -> dict:
        data = asdict(self)
        data["folder"], data["model_file"] = str(self.folder), str(self.model_file)
        return data


def _exportable_copy(model):
    """The model as the exporter needs it: fp32 on the CPU, in eval mode.
    Copied only when it is not already so (the user's model is never changed)."""
    import torch

    first = next(model.parameters())
    if first.dtype == torch.float32 and first.device.type == "cpu":
        return model
    return copy.deepcopy(model).to(device="cpu", dtype=torch.float32).eval()


def export_onnx(
    loaded,
    out_dir: Path,
    progress: ProgressSink = ignore_progress,
    cancel: CancelToken | None = None,
    int8: bool = False,
    calibration: str = "",
    weight_bits: int = 0,
    fused: bool = False,
) -> OnnxExportResult:
    """Export ``loaded`` (a LoadedModel, or a compressed model's) to ``out_dir``:
    fp32, dynamic int8 (``int8``), static int8 calibrated with ``calibration``
    (one of ``core.onnx.int8_static.CALIBRATION_METHODS``) or weight-only
    int8 / int4 (``weight_bits``, ONNX Runtime's MatMulNBits); ``fused``: the
    fused graph of onnxruntime-genai's builder (fp32 or ``weight_bits``)."""
    cancel = cancel or CancelToken()
    out_dir = Path(out_dir)
    model = loaded.model
    if refusal := export_refusal(model.config):
        raise UnsupportedModelError(refusal)
    if calibration:
        from core.onnx.int8_static import method_enum

        if int8:
            raise ValueError("int8 is dynamic quantisation; a calibration method makes it static")
        method_enum(calibration)  # an unknown method is refused before any work
    if weight_bits:
        from core.onnx.nbits import nbits_settings

        if int8 or calibration:
            raise ValueError("weight-only quantisation is a graph of its own, not int8 activations")
        nbits_settings(weight_bits)  # 8 or 4, refused before any work
    if fused:
        from core.onnx.fused import fused_refusal

        if int8 or calibration:
            raise ValueError("the fused graph is fp32 or weight-only, not int8 activations")
        if refusal := fused_refusal(model.config):
            raise UnsupportedModelError(refusal)
    if out_dir.exists() and any(out_dir.iterdir()):
        raise WorkbenchError(f"{out_dir} is not empty; choose a new folder for the export.")
    created = not out_dir.exists()
    out_dir.mkdir(parents=True, exist_ok=True)
    from core.onnx.quiet import info_logs_off

    try:
        with info_logs_off():
            return _export(
                loaded, model, out_dir, progress, cancel, int8, calibration, weight_bits, fused
            )
    except BaseException:
        _remove_contents(out_dir, remove_folder=created)
        raise


def _smoothing(int8: bool, calibration: str) -> float | None:
    """The SmoothQuant alpha folded in before tracing an int8 graph (None: none)."""
    if int8:
        from core.onnx.int8 import SMOOTH_ALPHA

        return SMOOTH_ALPHA
    if calibration:
        from core.onnx.int8_static import SMOOTH_ALPHA as STATIC_SMOOTH_ALPHA

        return STATIC_SMOOTH_ALPHA
    return None


def _export(
    loaded, model, out_dir, progress, cancel, int8, calibration, weight_bits, fused
) -> OnnxExportResult:
    from core.runtime.onnx.ort_model import OrtCausalLM

    start = time.perf_counter()
    quantized = int8 or bool(calibration) or bool(weight_bits)
    target = out_dir / MODEL_FILE
    exportable = _exportable_copy(model)
    if fused:
        untied = _build_fused(exportable, loaded.tokenizer, target, weight_bits, progress, cancel)
    else:
        untied, exportable = _trace_and_quantize(
            loaded, exportable, target, progress, cancel, int8, calibration, weight_bits
        )
    cancel.raise_if_cancelled()
    model.config.save_pretrained(out_dir)
    if getattr(model, "generation_config", None) is not None:
        model.generation_config.save_pretrained(out_dir)
    loaded.tokenizer.save_pretrained(out_dir)

    progress(Progress("Checking the export against PyTorch on real text", 0.7))
    windows = check_windows(loaded.tokenizer, model.config)
    try:
        # Opening the session is part of the check: ONNX Runtime may lack a
        # kernel for an op the trace wrote (Falcon's ALiBi: a bfloat16 Mul).
        ort_model = OrtCausalLM(target, model.config, model.generation_config, device="cpu")
        fidelity = compare_logits(exportable, ort_model, windows, quantized, cancel, DECODE_STEPS)
    except Exception as err:  # onnxruntime raises its own types for a graph that fails
        if isinstance(err, WorkbenchError):
            raise
        reason = ort_reason(err) if is_ort_error(err) else _first_line(err)
        raise ExportFailedError(
            f"ONNX export failed its check: the graph did not run in ONNX Runtime: {reason}"
        ) from err
    del ort_model  # the session maps the weights file; release it before any cleanup
    if not fidelity.passed:
        raise ExportFailedError(f"ONNX export failed its check: {fidelity.failure()}")
    result = OnnxExportResult(
        folder=out_dir,
        model_file=target,
        int8=quantized,
        bytes_on_disk=sum(p.stat().st_size for p in out_dir.glob(f"{MODEL_FILE}*")),
        untied_weights=untied,
        fidelity=fidelity,
        seconds=time.perf_counter() - start,
        calibration=calibration or "",
        weight_bits=weight_bits,
        fused=fused,
        exact_positions=exact_positions(model.config),
    )
    # Paths in the report are the folder's own: out_dir may be a staging
    # folder renamed into place afterwards (the cache, an export).
    report = result.to_dict() | {"folder": ".", "model_file": target.name}
    (out_dir / REPORT_FILE).write_text(json.dumps(report, indent=2))
    progress(Progress("ONNX export done", 1.0))
    return result


def _trace_and_quantize(loaded, exportable, target, progress, cancel, int8, calibration, bits):
    """Our traced graph (core.onnx.graph), quantised when asked. Returns the
    untied count and the model the graph must match (smoothed for int8)."""
    quantized = int8 or bool(calibration) or bool(bits)
    fp32_target = target.with_name("model-fp32.onnx") if quantized else target
    progress(Progress("Tracing the model to ONNX (torch.onnx.export, dynamo)", 0.05))
    alpha = _smoothing(int8, calibration)
    if alpha is not None:
        from core.onnx.int8 import smoothed_copy

        progress(Progress("SmoothQuant: measuring activation ranges for int8", 0.02))
        exportable = smoothed_copy(exportable, loaded.tokenizer, cancel, alpha)
    try:
        untied = export_graph(exportable, fp32_target)
    except Exception as err:  # torch.export and the ONNX translation raise many types
        if isinstance(err, WorkbenchError):
            raise
        raise ExportFailedError(f"ONNX export failed: {_first_line(err)}") from err
    cancel.raise_if_cancelled()
    if quantized:
        drop_value_info(fp32_target)
    try:
        _quantize(
            loaded, exportable, fp32_target, target, progress, cancel, int8, calibration, bits
        )
    except Exception as err:  # ONNX Runtime's quantisers raise onnx's and their own types
        if isinstance(err, WorkbenchError):
            raise
        raise ExportFailedError(f"ONNX quantisation failed: {_first_line(err)}") from err
    if quantized:
        for path in (fp32_target, fp32_target.with_name(f"{fp32_target.name}.data")):
            path.unlink(missing_ok=True)
    return untied, exportable


def drop_value_info(path: Path) -> None:
    """Remove the traced graph's intermediate shape annotations (weights
    untouched: they stay in the external data file). ONNX Runtime's
    quantisers re-infer every shape strictly, and the exporter's annotations
    can disagree with ONNX's own inference (a tiny OPT: 64 against 128),
    which stops them; inference derives the same shapes without them."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    del model.graph.value_info[:]
    onnx.save(model, str(path))


def _quantize(loaded, exportable, fp32_target, target, progress, cancel, int8, calibration, bits):
    if int8:
        from core.onnx.int8 import quantize_graph

        progress(Progress("Quantising weights to int8 (onnxruntime quantize_dynamic)", 0.5))
        quantize_graph(fp32_target, target)
    elif calibration:
        from core.onnx.int8_static import quantize_graph_static

        progress(
            Progress(f"Calibrating ({calibration}) and quantising to int8 (quantize_static)", 0.5)
        )
        quantize_graph_static(
            fp32_target, target, exportable.config, loaded.tokenizer, calibration, cancel
        )
    elif bits:
        from core.onnx.nbits import quantize_graph_nbits

        progress(Progress(f"Quantising weights to int{bits} (MatMulNBits)", 0.5))
        quantize_graph_nbits(fp32_target, target, bits)


def _build_fused(model, tokenizer, target, weight_bits, progress, cancel) -> int:
    """onnxruntime-genai's builder writes the graph; returns the untied count
    (the builder stores a tied head as its own MatMul weight: one)."""
    from core.onnx.fused import build_fused_graph

    what = f"int{weight_bits} blocks" if weight_bits else "fp32"
    progress(Progress(f"Building the fused graph ({what}; onnxruntime-genai builder)", 0.05))
    try:
        build_fused_graph(model, tokenizer, target, weight_bits, cancel=cancel, progress=progress)
    except Exception as err:  # the builder raises plain Exceptions for what it cannot write
        if isinstance(err, WorkbenchError):  # Cancelled among them
            raise
        raise ExportFailedError(f"the fused ONNX graph failed: {_first_line(err)}") from err
    return int(bool(getattr(model.config, "tie_word_embeddings", False)))


def _remove_contents(folder: Path, remove_folder: bool) -> None:
    """Undo a failed export: everything it wrote (the folder was empty or new)."""
    if remove_folder:
        shutil.rmtree(folder, ignore_errors=True)
        return
    for path in folder.iterdir():
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


def _first_line(err: BaseException) -> str:
    text = str(err)
    if "## Exception summary" in text:  # torch.export's report: its cause, not its advice
        text = text.split("## Exception summary", 1)[1]
    lines = [line for line in text.strip().splitlines() if line.strip()]
    summary = next((line for line in lines if "Error" in line or "error" in line), None)
    return (summary or (lines[0] if lines else type(err).__name__))[:300]
