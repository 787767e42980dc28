"""Load a model from the embedded default, the prepared demo classifier, a
local folder or a Hugging Face id: a causal LM, or a sequence classifier
(a folder whose config names a ``...ForSequenceClassification`` architecture).

Every way loading can fail maps to one of the errors in ``core.errors`` with a
one-line message; the user's files are only ever read.
"""

from __future__ import annotations

import pickle
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.errors import (
    CorruptModelError,
    ModelNotFoundError,
    NotAModelError,
    OutOfMemoryError,
    UnsupportedModelError,
    WorkbenchError,
)
from core.message_text import first_line, shown
from core.models import default_model, demo_classifier
from core.models.config_check import check_config
from core.models.config_read import CUSTOM_CODE, custom_code_refusal, read_config
from core.models.description import ModelDescription, describe
from core.models.finite_weights import non_finite_note, non_finite_weights
from core.models.load_report import load_report_held, show_load_report
from core.models.loading_onnx import is_onnx_folder
from core.models.source_identity import canonical_source
from core.models.tokenizer_fit import check_tokenizer_fits, embedding_rows
from core.progress import CancelToken, Progress, ProgressSink, ignore_progress
from core.runtime.runners import TORCH_RUNNER

DEFAULT_SOURCE = "default"
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


@dataclass
class LoadedModel:
    """A model ready to run. Compression makes new ones; this one is never changed."""

    model: Any  # transformers PreTrainedModel
    tokenizer: Any
    source: str
    folder: Path | None
    description: ModelDescription
    # Which PyTorch generation loop times it (core.runtime.runners); the
    # compiled one shares this model's weights, so it is a field, not a copy.
    runner: str = TORCH_RUNNER

    @property
    def device(self):
        return next(self.model.parameters()).device

    @property
    def task(self) -> str:
        """ "causal-lm" or "sequence-classification" (core.models.description)."""
        return self.description.task

    @property
    def is_classifier(self) -> bool:
        from core.models.description import SEQUENCE_CLASSIFICATION

        return self.task == SEQUENCE_CLASSIFICATION


def require_causal_lm(loaded: LoadedModel, what: str) -> None:
    """Refuse LM-only work (generation, the decode benchmark) on a classifier."""
    if refusal := causal_lm_refusal(loaded, what):
        raise UnsupportedModelError(refusal)


def causal_lm_refusal(loaded: LoadedModel, what: str) -> str | None:
    """require_causal_lm's line, for a window that greys a button with it."""
    if not loaded.is_classifier:
        return None
    return (
        f"{loaded.source} is a sequence classifier: {what} needs a causal language model "
        "(a classifier is timed by one forward pass and scored by accuracy)."
    )


def load_model(
    source: str | None = None,
    device: str = "auto",
    dtype: str | None = None,
    progress: ProgressSink = ignore_progress,
    cancel: CancelToken | None = None,
) -> LoadedModel:
    """Load ``source``: ``None``/``"default"``, ``"demo-classifier"`` (or
    ``"demo-classifier-fast"``), a folder path, or a hub id."""
    import torch

    from core.runtime.device import resolve_device, resolve_dtype

    cancel = cancel or CancelToken()
    source = source or DEFAULT_SOURCE
    if source != DEFAULT_SOURCE and source not in demo_classifier.SOURCES:
        source = canonical_source(source)  # runs name the folder, not the working directory
    notes: list[str] = []
    if source == DEFAULT_SOURCE:
        folder = default_model.ensure_default_model(progress, cancel)
        notes.append(default_model.QUANT_GRID_NOTE)
        name: str | Path = folder
    elif source in demo_classifier.SOURCES:
        folder = demo_classifier.prepared_dir(source)  # ModelNotFoundError if not prepared
        notes.append(demo_classifier.trained_note(folder))
        name = folder
    else:
        folder, name = _resolve_location(source)
        if folder is not None and is_onnx_folder(folder):  # an export of ours: ONNX Runtime
            from core.models.loading_onnx import graph_dtype_refusal, load_onnx_folder

            if refusal := graph_dtype_refusal(dtype):
                raise UnsupportedModelError(refusal)

            progress(Progress(f"Opening {source} in ONNX Runtime", None))
            return load_onnx_folder(folder, source, device)
    cancel.raise_if_cancelled()

    from core.models.exported.manifest_check import read_checked_manifest

    exported = read_checked_manifest(folder) if folder is not None else None
    target = resolve_device(device)
    if exported is not None and exported["cpu_only"]:
        target = _cpu_for_export(device, folder)
    torch_dtype = resolve_dtype(dtype, target)
    progress(Progress(f"Loading {source}", None))
    try:
        if exported is None:
            model, tokenizer = _load_transformers_model(name, torch_dtype)
        else:
            model, tokenizer = _load_exported(folder, exported, dtype)
        model.to(target)
    except WorkbenchError:
        raise
    except (torch.OutOfMemoryError, MemoryError) as err:
        raise OutOfMemoryError(
            f"Out of memory loading {source} on {target}: try the CPU or a smaller dtype."
        ) from err
    model.eval()
    notes += check_tokenizer_fits(tokenizer, embedding_rows(model), source)
    cancel.raise_if_cancelled()
    # Counted once, for the model as loaded (a compressed copy inherits them).
    broken_weights = non_finite_weights(model)
    if broken_weights:
        notes.append(non_finite_note(broken_weights))
    description = describe(model, source, folder, notes, broken_weights)
    progress(Progress(f"Loaded {description.architecture}", 1.0))
    return LoadedModel(model, tokenizer, source, folder, description)


def _check_utf8_path(path: Path) -> None:
    """safetensors and the tokenizers read paths as UTF-8 text: a name made
    of other bytes (Linux allows any) would be called a damaged weight file."""
    try:
        str(path).encode("utf-8")
    except UnicodeEncodeError:
        shown = str(path).encode("utf-8", "surrogateescape").decode("utf-8", "replace")
        raise UnsupportedModelError(
            f"{shown}: the path is not valid UTF-8, which the weight and tokenizer readers "
            "need; rename the folder (or link to it from a UTF-8 name)."
        ) from None


def _resolve_location(source: str) -> tuple[Path | None, str | Path]:
    """A local folder if the path exists, else a hub id if it looks like one."""
    path = Path(source).expanduser()
    try:
        exists = path.exists()
    except OSError as err:  # a name too long for the file system, ...
        raise ModelNotFoundError(
            f"{shown(source, 80)} cannot be a folder here: {err.strerror or first_line(err)}"
        ) from None
    if exists:
        _check_utf8_path(path)
        if path.is_file():
            if path.suffix == ".onnx":
                if is_onnx_folder(path.parent):
                    return path.parent, path.parent
                raise UnsupportedModelError(
                    f"{path} is an ONNX file without the config and tokenizer of a workbench "
                    "export beside it; give the exported folder."
                )
            raise NotAModelError(f"{path} is a file; give the folder that holds config.json.")
        if not (path / "config.json").is_file() and not is_onnx_folder(path):
            inside = _model_folders_in(path)
            if inside:  # an export of ONNX graphs only: the graphs are one level down
                raise NotAModelError(
                    f"{path} holds no model itself (no config.json); load one of its "
                    f"folders: {', '.join(str(path / name) for name in inside)}"
                )
            raise NotAModelError(
                f"{path} is not a Hugging Face model folder (it has no config.json)."
            )
        return path, path
    looks_local = source.startswith((".", "/", "~")) or source.count("/") > 1 or "\\" in source
    if looks_local or not _HUB_ID.match(source):
        raise ModelNotFoundError(f"No such folder: {path}")
    snapshot = _cached_snapshot(source)
    if snapshot is not None:
        return snapshot, snapshot
    return None, source


def _model_folders_in(path: Path, most: int = 4) -> list[str]:
    """Names of ``path``'s sub-folders that a load would take (a config.json
    inside), a few at most; an unreadable folder has none."""
    try:
        children = sorted(p for p in path.iterdir() if p.is_dir() and not p.is_symlink())
    except OSError:
        return []
    return [p.name for p in children if (p / "config.json").is_file()][:most]


def _cached_snapshot(repo_id: str) -> Path | None:
    """The hub id's snapshot already in the Hugging Face cache, holding a
    config and weights: loaded from there without asking the network first
    (offline, transformers retried each file's check for minutes before
    using the cached copy). None when it is not there whole."""
    try:
        from huggingface_hub import snapshot_download

        folder = Path(snapshot_download(repo_id, local_files_only=True))
    except Exception:  # not cached, or a cache entry we cannot read: ask the hub
        return None
    weights = any(folder.glob("*.safetensors")) or any(folder.glob("*.bin"))
    return folder if (folder / "config.json").is_file() and weights else None


def _is_sequence_classifier(config) -> bool:
    architectures = getattr(config, "architectures", None) or []
    return any(a.endswith("ForSequenceClassification") for a in architectures)


def _load_transformers_model(name: str | Path, dtype):
    from transformers import (
        AutoModelForCausalLM,
        AutoModelForSequenceClassification,
    )

    config = read_config(name)
    check_config(config, name)  # before anything is built
    classifier = _is_sequence_classifier(config)
    auto = AutoModelForSequenceClassification if classifier else AutoModelForCausalLM
    kind = "sequence classifier" if classifier else "causal language model"
    # transformers' report is shown only for a model that is accepted: a refusal is one line.
    with load_report_held() as report:
        model = _built_and_checked(auto, name, config, dtype, kind)
    show_load_report(report)
    tokenizer = read_tokenizer(name)
    return model, tokenizer


def _built_and_checked(auto, name: str | Path, config, dtype, kind: str):
    """``auto.from_pretrained``, its failures as one-line errors, and a
    refusal of weights that do not fill the model the config describes."""
    from transformers.utils import logging as transformers_logging

    # Its "Loading weights" bar interleaved with the jobs' own progress lines
    # (the CLI's stderr); the Load job reports the stage itself.
    transformers_logging.disable_progress_bar()
    try:
        model, info = auto.from_pretrained(
            name, config=config, dtype=dtype, output_loading_info=True, trust_remote_code=False
        )
    except ValueError as err:
        if "Unrecognized configuration class" in str(err):
            raise UnsupportedModelError(
                f"{name}: architecture {config.model_type!r} is not a {kind} this version can run."
            ) from err
        raise CorruptModelError(f"{name}: {first_line(err)}") from err
    except OSError as err:
        raise CorruptModelError(f"{name}: weights cannot be read ({first_line(err)}).") from err
    except Exception as err:  # safetensors and torch raise their own types on damaged files
        if "OutOfMemory" in type(err).__name__ or isinstance(err, MemoryError):
            raise
        if "Safetensor" in type(err).__name__ or "deserializ" in str(err).lower():
            raise CorruptModelError(f"{name}: weight file is damaged ({first_line(err)}).") from err
        if isinstance(err, pickle.UnpicklingError):  # torch.load(weights_only=True) refused it
            raise CorruptModelError(
                f"{name}: a weight file is a pickle holding more than tensors; it is not "
                "loaded, as unpickling it could run code (convert a trusted copy to safetensors)"
            ) from err
        if "ignore_mismatched_sizes" in str(err):
            raise CorruptModelError(
                f"{name}: the weights' shapes do not match config.json (an edited size?)"
            ) from err
        if isinstance(err, ImportError):  # a quantized checkpoint, flash attention, ...
            raise UnsupportedModelError(
                f"{name}: loading it needs a package this install does not have ({first_line(err)})"
            ) from err
        # torch or transformers refusing what the config asks to build: an
        # unknown activation (KeyError), a padding id past the vocabulary
        # (AssertionError), a size torch cannot allocate (RuntimeError), ...
        raise CorruptModelError(
            f"{name}: the model config.json describes cannot be built "
            f"({type(err).__name__}: {first_line(err)})"
        ) from err
    # transformers fills missing weights with random values and only warns;
    # a model that is partly random would give meaningless numbers.
    missing = [k for k in info.get("missing_keys", []) if "rotary" not in k]
    if missing:
        raise CorruptModelError(
            f"{name}: {len(missing)} weights are missing from the files "
            f"(first: {missing[0]}); the download or copy is incomplete."
        )
    if extra := layers_past_the_config(info.get("unexpected_keys", []), config):
        raise CorruptModelError(
            f"{name}: the weight files hold layer {extra} but config.json describes "
            f"{config.num_hidden_layers} layers (an edited num_hidden_layers?); loading would "
            "silently drop weights."
        )
    return model


_LAYER_INDEX = re.compile(r"\.(?:layers|h|blocks|layer)\.(\d+)\.")


def layers_past_the_config(unexpected: list[str], config) -> int | None:
    """The first layer index among weights transformers did not use that is
    past the config's layer count, or None. Other unused tensors (old rotary
    buffers, heads a family ignores) are left to transformers' warning."""
    count = getattr(config, "num_hidden_layers", None)
    if not isinstance(count, int):
        return None
    found = [int(m[1]) for key in unexpected if (m := _LAYER_INDEX.search(f".{key}"))]
    past = sorted(index for index in found if index >= count)
    return past[0] if past else None


# Any of these in a folder is worth handing to AutoTokenizer.
TOKENIZER_FILES = ("tokenizer*", "*vocab*", "merges.txt", "*.model", "*.tiktoken", "*.bpe")


def read_tokenizer(name: str | Path):
    """The tokenizer of ``name``, or NotAModelError in one line: damaged
    tokenizer files fail inside transformers and tokenizers with any type
    (a tokenizer_config.json holding a list: AttributeError; a tokenizer.json
    without its fields: KeyError)."""
    from transformers import AutoTokenizer

    folder = Path(name)
    if folder.is_dir() and not any(any(folder.glob(p)) for p in TOKENIZER_FILES):
        # transformers' own words end mid-sentence here ("...from one of: ")
        raise NotAModelError(
            f"{name}: no tokenizer files (tokenizer.json, tokenizer_config.json, "
            "vocab.json, tokenizer.model, ...): copy them from the model it came from."
        )
    try:
        return AutoTokenizer.from_pretrained(name, trust_remote_code=False)
    except Exception as err:
        if isinstance(err, MemoryError):
            raise
        if CUSTOM_CODE in str(err):
            raise UnsupportedModelError(custom_code_refusal(name, "tokenizer_config.json")) from err
        reason = f"{type(err).__name__}: {first_line(err)}"
        raise NotAModelError(f"{name}: no usable tokenizer ({reason}).") from err


def _cpu_for_export(device: str, folder: Path):
    """Exports holding CPU-kernel layouts (packed int4) run on the CPU."""
    import torch

    if device not in ("auto", "cpu"):
        raise UnsupportedModelError(
            f"{folder} stores CPU-kernel weights (packed int4); load it on the CPU."
        )
    return torch.device("cpu")


def _load_exported(folder: Path, manifest: dict, dtype: str | None):
    """A folder we exported: in the dtypes it was stored in (an export is a
    chosen configuration; upcasting it would measure something else)."""
    if dtype is not None:
        raise UnsupportedModelError(
            f"{folder} is an exported configuration stored in its own dtypes; load it without "
            "a dtype."
        )
    if manifest["loader"] == "transformers":
        return _load_transformers_model(folder, "auto")

    from core.models.exported.load import load_workbench_folder

    model = load_workbench_folder(folder, manifest)
    tokenizer = read_tokenizer(folder)
    return model, tokenizer
