"""The "onnx" export format: the compressed model as an ONNX graph with a KV
cache (fp32; and an int8 graph from ONNX Runtime's dynamic quantization
beside it), each checked against PyTorch on real text before it is kept."""

from __future__ import annotations

from pathlib import Path

from core.export.formats import ExportInputs, FormatWritten, register_format
from core.jobs import CancelToken, ProgressSink

SUBFOLDERS = {"fp32": "onnx", "int8": "onnx-int8"}


@register_format("onnx")
def write_onnx(
    inputs: ExportInputs, folder: Path, progress: ProgressSink, cancel: CancelToken
) -> FormatWritten:
    from core.export.onnx_model import export_onnx

    files, details, parts = [], {}, []
    for kind, sub in SUBFOLDERS.items():
        result = export_onnx(inputs.compressed, folder / sub, progress, cancel, int8=kind == "int8")
        f = result.fidelity
        files += sorted(f"{sub}/{p.name}" for p in (folder / sub).iterdir())
        details[kind] = result.to_dict() | {"folder": sub, "model_file": f"{sub}/model.onnx"}
        parts.append(
            f"{sub}/ ({kind}, {result.bytes_on_disk / 1e6:.1f} MB, top-1 "
            f"{f.top1_agreement:.2%} and max |logit diff| {f.max_abs_logit_diff:.2g} "
            f"against PyTorch)"
        )
    return FormatWritten("onnx", tuple(files), "ONNX Runtime graphs: " + "; ".join(parts), details)
