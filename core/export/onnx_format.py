"""The "onnx" export format: the compressed model as an ONNX graph with a KV
cache (fp32; and an int8 graph from ONNX Runtime's dynamic quantization
beside it), each checked against PyTorch on real text before it is kept.
A run measured on a static int8 graph hands over that graph, in
``onnx-int8-static-<method>/``.

A run measured on ONNX Runtime hands over the graph it was timed on (copied
from the export cache after its sha256 was checked), labelled as measured,
instead of a new export."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from core.export.formats import ExportInputs, FormatWritten, register_format
from core.progress import CancelToken, Progress, ProgressSink

SUBFOLDERS = {"fp32": "onnx", "int8": "onnx-int8"}


def _copy_measured(measured: dict, folder: Path, sub: str) -> tuple[dict, str]:
    from core.errors import ProvenanceError
    from core.onnx.cache import graph_digest
    from core.onnx.export import REPORT_FILE

    source = Path(measured["folder"])
    shutil.copytree(source, folder / sub)
    found = graph_digest(folder / sub)
    if found != measured["sha256"]:
        raise ProvenanceError(
            f"the copied ONNX graph's sha256 {found[:12]} is not the measured "
            f"{measured['sha256'][:12]}; nothing was kept"
        )
    checked = json.loads((folder / sub / REPORT_FILE).read_text())
    fidelity = checked.get("fidelity", {})
    details = {
        "measured": True,
        "sha256": found,
        "folder": sub,
        "model_file": f"{sub}/model.onnx",
        "fidelity": fidelity,
        "bytes_on_disk": checked.get("bytes_on_disk"),
    }
    limit = ""
    if checked.get("exact_positions"):
        details["exact_positions"] = checked["exact_positions"]
        limit = f"; it runs up to {checked['exact_positions']} positions"
    summary = (
        f"{sub}/ (the graph the run was timed on, sha256 {found[:12]}; top-1 "
        f"{fidelity.get('top1_agreement', float('nan')):.2%} against PyTorch{limit})"
    )
    return details, summary


@register_format("onnx")
def write_onnx(
    inputs: ExportInputs, folder: Path, progress: ProgressSink, cancel: CancelToken
) -> FormatWritten:
    from core.models.source_identity import loaded_dtype
    from core.onnx.export import export_onnx

    files, details, parts = [], {}, []
    measured = inputs.measured_onnx
    kinds = SUBFOLDERS
    if measured is not None:  # the measured graph only: that is what the run was
        # "int8-static-<method>" for a static int8 graph (core.onnx.cache.graph_kind)
        kind = measured.get("kind") or ("int8" if measured["int8"] else "fp32")
        kinds = {kind: SUBFOLDERS.get(kind, f"onnx-{kind}")}
    for kind, sub in kinds.items():
        if measured is not None:
            progress(Progress("Copying the measured ONNX graph", None))
            details[kind], summary = _copy_measured(measured, folder, sub)
            parts.append(summary)
        else:
            result = export_onnx(
                inputs.compressed, folder / sub, progress, cancel, int8=kind == "int8"
            )
            f = result.fidelity
            details[kind] = result.to_dict() | {"folder": sub, "model_file": f"{sub}/model.onnx"}
            parts.append(
                f"{sub}/ ({kind}, {result.bytes_on_disk / 1e6:.1f} MB, top-1 "
                f"{f.top1_agreement:.2%} and max |logit diff| {f.max_abs_logit_diff:.2g} "
                f"against PyTorch)"
            )
        files += sorted(f"{sub}/{p.name}" for p in (folder / sub).iterdir())
        cancel.raise_if_cancelled()
    if measured is None and (dtype := loaded_dtype(inputs.compressed)) not in ("", "float32"):
        # The exporter traces in float32: say so rather than let the size pass as measured.
        details["upcast_from"] = dtype
        parts.append(
            f"the graphs hold the {dtype} weights upcast to float32 (larger than the model "
            "measured), and their fidelity is against that float32 copy"
        )
    return FormatWritten("onnx", tuple(files), "ONNX Runtime graphs: " + "; ".join(parts), details)
