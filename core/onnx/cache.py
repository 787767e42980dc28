"""Exported graphs kept in the workbench cache, so the benchmark, the CLI and
the window do not re-export (two minutes on the default model) each time.

The key is a hash of what the graph is made of: the model's config and every
stored tensor (so a compressed model gets its own entry), fp32, dynamic int8
or static int8 with its calibration method and settings, and the versions of
the libraries that trace and quantise it. An entry is written
to a temporary folder beside the cache and renamed into place when the export
has passed its check, so a half-written entry is never read.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from core.progress import CancelToken, Progress, ProgressSink, ignore_progress

EXPORT_VERSION = 2  # bump when the graph's form changes (2: Gemm as MatMul, experts sliced)


def graph_kind(
    int8: bool = False, calibration: str = "", weight_bits: int = 0, fused: bool = False
) -> str:
    """The cache entry's suffix: fp32, int8 (dynamic), int8-static-<method> or
    int8/int4-weight-only (MatMulNBits); fused-... for onnxruntime-genai's graph."""
    if fused:
        return "fused-" + graph_kind(weight_bits=weight_bits)
    if weight_bits:
        return f"int{weight_bits}-weight-only"
    if calibration:
        return f"int8-static-{calibration}"
    return "int8" if int8 else "fp32"


def export_key(
    model, int8: bool, calibration: str = "", weight_bits: int = 0, fused: bool = False
) -> str:
    import onnxruntime
    import onnxscript
    import torch
    import transformers

    digest = hashlib.blake2b(digest_size=16)
    versions = (torch.__version__, transformers.__version__, onnxscript.__version__)
    from core.onnx.int8 import SMOOTH_ALPHA, WEIGHT_FORMAT

    recipe = [EXPORT_VERSION, int8, versions, onnxruntime.__version__]
    if int8:
        recipe.append(SMOOTH_ALPHA)
        if WEIGHT_FORMAT != "s8":  # s8 (the first format) kept its entries' keys
            recipe.append(WEIGHT_FORMAT)
    if calibration:
        from core.onnx.int8_static import static_settings

        recipe.append(static_settings(calibration))
    if weight_bits:
        from core.onnx.nbits import nbits_settings

        recipe.append(nbits_settings(weight_bits))
    if fused:
        from core.onnx.fused import fused_settings

        recipe.append(fused_settings(weight_bits))
    digest.update(json.dumps(recipe).encode())
    digest.update(model.config.to_json_string(use_diff=False).encode())
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        if not isinstance(tensor, torch.Tensor) or tensor.is_quantized:
            digest.update(repr(tensor).encode())  # packed or quantized: not exportable anyway
            continue
        digest.update(str(tensor.dtype).encode())
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy())
    return digest.hexdigest()


def cached_onnx_export(
    loaded,
    int8: bool = False,
    progress: ProgressSink = ignore_progress,
    cancel: CancelToken | None = None,
    calibration: str = "",
    weight_bits: int = 0,
    fused: bool = False,
) -> Path:
    """The folder of ``loaded``'s export (made now if the cache lacks it):
    fp32, dynamic int8 (``int8``), static int8 calibrated with ``calibration``,
    or weight-only ``weight_bits`` (MatMulNBits); ``fused``: onnxruntime-genai's
    graph (core.onnx.fused)."""
    from core.atomic_folder import atomic_folder
    from core.cache_lock import building
    from core.models.default_model import cache_root
    from core.onnx.export import REPORT_FILE, export_onnx

    root = cache_root() / "onnx"
    key = export_key(loaded.model, int8, calibration, weight_bits, fused)
    folder = root / f"{key}-{graph_kind(int8, calibration, weight_bits, fused)}"
    if (folder / REPORT_FILE).is_file():
        return folder
    with building(folder, cancel, progress):
        if (folder / REPORT_FILE).is_file():  # another process exported it meanwhile
            return folder
        _remove_killed_builds(folder)
        with atomic_folder(folder, overwrite=True) as staging:  # replaces a broken entry
            export_onnx(
                loaded, staging, progress, cancel, int8, calibration, weight_bits=weight_bits,
                fused=fused,
            )  # fmt: skip
    return folder


def _remove_killed_builds(folder: Path) -> None:
    """Half-written copies of ``folder`` that a killed export left (SIGKILL
    runs no clean-up; each can be hundreds of MB). Called under the entry's
    lock, so no live export is writing them."""
    import shutil

    from core.atomic_folder import PARTIAL

    for stale in folder.parent.glob(f".{folder.name}{PARTIAL}*"):
        shutil.rmtree(stale, ignore_errors=True)


def load_ort_version(
    loaded,
    int8: bool = False,
    device: str = "auto",
    progress: ProgressSink = ignore_progress,
    cancel: CancelToken | None = None,
    calibration: str = "",
    weight_bits: int = 0,
    fused: bool = False,
):
    """``loaded`` exported (or found in the cache) and opened in ONNX Runtime."""
    return open_cached_export(
        loaded, device, progress, cancel, int8, calibration, weight_bits, fused
    )[1]


def open_cached_export(
    loaded,
    device: str = "auto",
    progress: ProgressSink = ignore_progress,
    cancel: CancelToken | None = None,
    int8: bool = False,
    calibration: str = "",
    weight_bits: int = 0,
    fused: bool = False,
) -> tuple:
    """(folder, the LoadedModel opened from it) for ``loaded``'s export
    (``cached_onnx_export``). A cache entry that no longer opens (a file
    damaged or cut short since it was written) is ours to replace: it is
    exported again once, instead of failing every run until someone finds and
    deletes it."""
    import shutil

    from core.errors import CorruptModelError
    from core.models.default_model import cache_root
    from core.models.loading_onnx import load_onnx_folder

    kind = graph_kind(int8, calibration, weight_bits, fused)
    source = f"{loaded.source} (ONNX{'' if kind == 'fp32' else ' ' + kind})"
    export = (int8, progress, cancel, calibration, weight_bits, fused)
    folder = cached_onnx_export(loaded, *export)
    try:
        return folder, load_onnx_folder(folder, source, device)
    except CorruptModelError:
        if folder.parent != cache_root() / "onnx":  # never anything outside the cache
            raise
        progress(Progress("The cached ONNX export is damaged; exporting it again", None))
        shutil.rmtree(folder)
    folder = cached_onnx_export(loaded, *export)
    return folder, load_onnx_folder(folder, source, device)


def graph_digest(folder: Path) -> str:
    """sha256 of an exported graph (``model.onnx`` and its external weights):
    what a run on ONNX Runtime records, and what its export is checked against."""
    from core.onnx.export import MODEL_FILE

    digest = hashlib.sha256()
    for path in sorted(folder.glob(f"{MODEL_FILE}*")):
        digest.update(path.name.encode())
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()
