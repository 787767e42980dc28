"""What rebuilds exactly what a run measured.

Every run gets a stable ID and an ``artifact`` (RunRecord.artifact): the
runtime it ran on, and what cannot be rebuilt from its recipe alone. A
recipe is deterministic from the original and the calibration text, so it
needs nothing more; a trained student is not, so its weights are kept beside
the results store (``artifacts/<run id>/``, written by the Hugging Face
folder writer) with their sha256; an ONNX Runtime run names the graph it was
timed on by sha256. An export reads these, and refuses when the bytes are not
the ones measured.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from pathlib import Path

from core.errors import ProvenanceError

ARTIFACTS = "artifacts"
TRAINED = "trained-weights"


def new_run_id() -> str:
    """Sortable by time, unique without coordination (two windows, a CLI)."""
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"


def files_digest(folder: Path, pattern: str) -> str:
    """sha256 over the names and bytes of ``folder``'s files matching ``pattern``."""
    digest = hashlib.sha256()
    paths = sorted(folder.glob(pattern))
    if not paths:
        raise ProvenanceError(f"{folder} holds no {pattern} file")
    for path in paths:
        digest.update(path.name.encode())
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def save_trained(loaded, original_config, store_dir: Path, run_id: str, check_cancel) -> dict:
    """Keep a trained model's weights for its run; the artifact fields naming them."""
    from core.atomic_folder import atomic_folder
    from core.export.hf_folder import write_hf_folder

    relative = f"{ARTIFACTS}/{run_id}"
    target = Path(store_dir) / relative
    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_folder(target) as temp:
        write_hf_folder(loaded.model, loaded.tokenizer, original_config, temp, None, check_cancel)
    return {
        "kind": TRAINED,
        "weights_folder": relative,
        "weights_sha256": files_digest(target, "*.safetensors"),
    }


def trained_folder(store_dir: Path, artifact: dict) -> Path:
    """The kept weights' folder, checked to lie inside the store's artifacts."""
    root = (Path(store_dir) / ARTIFACTS).resolve()
    relative = artifact.get("weights_folder")
    if not isinstance(relative, str):
        raise ProvenanceError("the run names no trained weights")
    folder = (Path(store_dir) / relative).resolve()
    if root not in folder.parents:
        raise ProvenanceError(f"the run's weights folder {relative!r} is outside {root}")
    if not folder.is_dir():
        raise ProvenanceError(
            f"the run's trained weights ({folder}) are gone; distil the student again"
        )
    return folder


def load_trained(store_dir: Path, artifact: dict, source: str, device: str = "auto"):
    """The trained model a run measured, after checking its sha256."""
    import dataclasses

    from core.models.loading import load_model

    folder = trained_folder(store_dir, artifact)
    found = files_digest(folder, "*.safetensors")
    if found != artifact.get("weights_sha256"):
        raise ProvenanceError(
            f"the trained weights in {folder} changed since they were measured "
            f"(sha256 {found[:12]}, measured {str(artifact.get('weights_sha256'))[:12]})"
        )
    loaded = load_model(str(folder), device=device)
    return dataclasses.replace(loaded, source=source)
