"""Load a folder written by ``hf_folder.py`` whose manifest says transformers
cannot load it alone (quantized or factored modules, per-module head counts).

The frame is the model transformers builds from the folder's config; the
manifest's modules are built from their tensors by ``module_kinds`` (an
allow-list: nothing is unpickled), recorded attributes are set, and every
other tensor is put in place. Every tensor the frame expects must come from
the file: a missing one is an error, never a random weight.

The folder is untrusted input. ``manifest_check.py`` has checked the
manifest's fields and that the weights file lies inside the folder; here,
before any module is built, module names must be linear layers of the frame,
attribute names the frame module's own settings, and every tensor in the
file must have a place with the shape and dtype that place wants. Last, the
model runs two tokens, so modules that do not fit together (a tampered
width, a head count) are refused at load, not halfway through a benchmark.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from core.errors import CorruptModelError
from core.message_text import first_line
from core.models.config_read import read_config
from core.models.exported.module_kinds import FLOAT_DTYPES, KINDS, dtype_name
from core.models.exported.skeleton import build_config, build_skeleton, scalar_attributes
from core.models.linear_layers import replace_module

PAIR = "Sequential"  # a low-rank factor pair: its children are entries of their own


def _split(key: str) -> tuple[str, str]:
    module, _, name = key.rpartition(".")
    return module, name


def load_workbench_folder(folder: Path, manifest: dict) -> nn.Module:
    """The exported model on the CPU, in the dtypes it was stored in.
    ``manifest`` comes from ``manifest_check.read_checked_manifest``."""
    config = read_config(folder)
    tensors = _read_tensors(folder, manifest["weights"])
    overrides = manifest["build_overrides"]
    try:
        model = build_skeleton(config, overrides, device="cpu")
    except (ValueError, TypeError, RuntimeError) as err:
        raise CorruptModelError(
            f"{folder}: config.json and build_overrides build no model ({first_line(err)})."
        ) from None
    frame = dict(model.named_modules())
    entries = _checked_entries(folder, manifest["modules"], frame)
    plain = _plain_tensors(model, entries)
    shared = {a: t for a, t in manifest["aliases"].items() if a not in plain}
    own = _sort_tensors(folder, tensors, plain, entries, shared)
    frame_aliases = {a: t for a, t in manifest["aliases"].items() if a in plain}
    aliases = _checked_aliases(folder, frame_aliases, plain, tensors)
    missing = set(plain) - set(tensors) - set(aliases)
    if missing:
        raise CorruptModelError(
            f"{folder}: {len(missing)} tensors missing from the weights (first: {min(missing)})."
        )

    for name, module in _build(folder, entries, own).items():
        replace_module(model, name, module)
    for key in plain.keys() & tensors.keys():
        _put(model, key, tensors[key])
    for alias, target in aliases.items():
        _put(model, alias, _get(model, target))
    _set_attributes(folder, manifest["attributes"], frame, entries)
    _set_buffer_dtypes(folder, manifest["buffer_dtypes"], frame, entries)
    if overrides:  # the frame was built from adjusted values; the real config rules
        frame_config = build_config(config, overrides)
        # Building a model sets its config's attention implementation; the
        # real config was never built into one, and with None BERT-style
        # encoders and GPT-2 built no attention mask (padding and causality lost).
        config._attn_implementation = model.config._attn_implementation
        for module in model.modules():
            if getattr(module, "config", None) is not None and type(module.config) is type(
                frame_config
            ):
                module.config = config
    _check_runs(folder, model.eval())
    return model


def _read_tensors(folder: Path, weights: str) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        loaded = load_file(str(folder / weights))
    except (OSError, RuntimeError, SafetensorError) as err:
        raise CorruptModelError(f"{folder}: weights cannot be read ({first_line(err)}).") from None
    # Fresh, aligned copies: the tensors load_file returns may sit at any
    # byte offset of one buffer, and torch's int8 packed-matmul kernel
    # crashed (segfault) on such an int8 weight.
    return {k: v.clone() for k, v in loaded.items()}


def _checked_entries(folder: Path, modules: list[dict], frame: dict) -> dict[str, dict]:
    """The manifest's modules by name. Each replaces a module of its own kind
    in the frame (a linear layer, an embedding, a LayerNorm), or is child
    ``i`` of a low-rank pair that does."""
    from transformers.pytorch_utils import Conv1D

    entries: dict[str, dict] = {}
    for entry in modules:
        if entry["name"] in entries:
            raise CorruptModelError(f"{folder}: module {entry['name']} is listed twice.")
        entries[entry["name"]] = entry
    for name, entry in entries.items():
        parent, _, index = name.rpartition(".")
        if parent in entries and entries[parent]["kind"] == PAIR:
            if entry["kind"] == PAIR or index not in ("0", "1"):
                raise CorruptModelError(
                    f"{folder}: module {name} ({entry['kind']}) cannot be part of a low-rank pair."
                )
        elif KINDS[entry["kind"]].replaces == "embedding":
            if type(frame.get(name)) is not nn.Embedding:
                raise CorruptModelError(
                    f"{folder}: module {name} is not a token embedding of this architecture."
                )
        elif KINDS[entry["kind"]].replaces == "layernorm":
            if type(frame.get(name)) is not nn.LayerNorm:
                raise CorruptModelError(
                    f"{folder}: module {name} is not a LayerNorm of this architecture."
                )
        elif not isinstance(frame.get(name), (nn.Linear, Conv1D)):
            raise CorruptModelError(
                f"{folder}: module {name} is not a linear layer of this architecture."
            )
    for name, entry in entries.items():
        if entry["kind"] == PAIR and not all(f"{name}.{i}" in entries for i in range(2)):
            raise CorruptModelError(f"{folder}: the low-rank pair {name} lacks a factor.")
    return entries


def _plain_tensors(model: nn.Module, entries: dict) -> dict[str, torch.Tensor]:
    """The frame's stored tensors outside the manifest's modules, by name."""
    out = {}
    for m, module in model.named_modules():
        if m in entries:
            continue
        for n, t in module.named_parameters(recurse=False):
            out[f"{m}.{n}" if m else n] = t
        for n, t in module.named_buffers(recurse=False):
            if n not in module._non_persistent_buffers_set:
                out[f"{m}.{n}" if m else n] = t
    return out


def _sort_tensors(
    folder: Path, tensors: dict, plain: dict, entries: dict, shared: dict
) -> dict[str, dict]:
    """Every tensor in the file, checked against its place: a frame tensor's
    shape (float, or its exact dtype) or one a module kind accepts by name;
    ``shared`` names module tensors stored once under another module's name
    (an int8 head and embedding of one tied matrix); then each kind checks
    its tensors' dtypes and shapes together."""
    own: dict[str, dict] = {name: {} for name in entries}
    for alias, target in shared.items():
        module, short = _split(alias)
        kind = KINDS[entries[module]["kind"]] if module in entries else None
        if (
            kind is None
            or short not in kind.required + kind.optional
            or alias in tensors
            or target not in tensors
        ):
            raise CorruptModelError(
                f"{folder}: aliases {alias} -> {target} do not name a module tensor missing "
                "from the weights and one stored there."
            )
        own[module][short] = tensors[target]
    for key, tensor in tensors.items():
        if key in plain:
            problem = _plain_problem(tensor, plain[key])
            if problem:
                raise CorruptModelError(f"{folder}: {key} {problem}.")
            continue
        module, short = _split(key)
        kind = KINDS[entries[module]["kind"]] if module in entries else None
        if kind is None or short not in kind.required + kind.optional:
            raise CorruptModelError(f"{folder}: {key} has no place in this architecture.")
        own[module][short] = tensor
    for name, entry in entries.items():
        kind = KINDS[entry["kind"]]
        lacking = [short for short in kind.required if short not in own[name]]
        if lacking:
            raise CorruptModelError(f"{folder}: {name}.{lacking[0]} is missing from the weights.")
        problem = kind.check(own[name], entry["attributes"])
        if problem:
            raise CorruptModelError(f"{folder}: {name} ({entry['kind']}): {problem}.")
    return own


def _plain_problem(tensor: torch.Tensor, expected: torch.Tensor) -> str | None:
    if tuple(tensor.shape) != tuple(expected.shape):
        return f"has shape {list(tensor.shape)}; this architecture wants {list(expected.shape)}"
    if expected.is_floating_point():
        if tensor.dtype not in FLOAT_DTYPES:
            return f"is {dtype_name(tensor.dtype)}; this architecture wants a float"
    elif tensor.dtype != expected.dtype:
        return (
            f"is {dtype_name(tensor.dtype)}; this architecture wants {dtype_name(expected.dtype)}"
        )
    return None


def _checked_aliases(folder: Path, aliases: dict, plain: dict, tensors: dict) -> dict:
    """Tied tensors: each alias is a frame tensor not in the file, shared
    with a frame tensor of the same shape that is."""
    for alias, target in aliases.items():
        if alias not in plain or alias in tensors or target not in plain or target not in tensors:
            raise CorruptModelError(
                f"{folder}: aliases {alias} -> {target} do not name a tensor missing from the "
                "weights and one stored there."
            )
        if tensors[target].shape != plain[alias].shape:
            raise CorruptModelError(f"{folder}: aliases {alias} -> {target} differ in shape.")
    return aliases


def _build(folder: Path, entries: dict, own: dict) -> dict[str, nn.Module]:
    """The manifest's top-level modules, built (pairs from their built factors)."""
    built = {
        name: KINDS[entry["kind"]].build(own[name], entry["attributes"], [])
        for name, entry in entries.items()
        if entry["kind"] != PAIR
    }
    for name, entry in entries.items():
        if entry["kind"] == PAIR:
            first, second = built.pop(f"{name}.0"), built.pop(f"{name}.1")
            if first.out_features != second.in_features:
                raise CorruptModelError(
                    f"{folder}: the low-rank pair {name} does not chain ({first.out_features} "
                    f"outputs into {second.in_features} inputs)."
                )
            built[name] = KINDS[PAIR].build({}, entry["attributes"], [first, second])
    return built


def _get(model: nn.Module, key: str) -> torch.Tensor:
    module_name, short = _split(key)
    module = model.get_submodule(module_name)
    return module._parameters[short] if short in module._parameters else module._buffers[short]


def _put(model: nn.Module, key: str, tensor: torch.Tensor) -> None:
    """Put a tensor where the frame has one of that name (checked before)."""
    module_name, short = _split(key)
    module = model.get_submodule(module_name)
    if short in module._parameters:
        if not isinstance(tensor, nn.Parameter):
            tensor = nn.Parameter(tensor, requires_grad=False)
        module._parameters[short] = tensor
    else:
        module._buffers[short] = tensor


def _same_kind(current, value) -> bool:
    if value is None or current is None:
        return True
    if isinstance(current, bool) or isinstance(value, bool):
        return type(current) is type(value)
    if isinstance(current, float):
        return isinstance(value, (int, float))
    return type(current) is type(value)


def _set_attributes(folder: Path, attributes: dict, frame: dict, entries: dict) -> None:
    """Recorded settings (head counts after head pruning): only a setting the
    frame module already has (``scalar_attributes``), with a value of its kind."""
    for module_name, values in attributes.items():
        module = frame.get(module_name)
        if module is None or module_name in entries:
            raise CorruptModelError(
                f"{folder}: attributes name {module_name}, not a module of this architecture."
            )
        settings = scalar_attributes(module)
        for key, value in values.items():
            if key not in settings:
                raise CorruptModelError(
                    f"{folder}: attribute {key!r} is not a setting of {module_name} "
                    f"({type(module).__name__})."
                )
            if not _same_kind(settings[key], value):
                raise CorruptModelError(
                    f"{folder}: attribute {module_name}.{key} must be "
                    f"{type(settings[key]).__name__}, not {value!r}."
                )
            setattr(module, key, value)


def _set_buffer_dtypes(folder: Path, buffer_dtypes: dict, frame: dict, entries: dict) -> None:
    for key, dtype in buffer_dtypes.items():
        module_name, short = _split(key)
        module = frame.get(module_name)
        if (
            module is None
            or module_name in entries
            or short not in module._non_persistent_buffers_set
            or module._buffers.get(short) is None
        ):
            raise CorruptModelError(
                f"{folder}: buffer_dtypes names {key}, not a rebuilt buffer of this architecture."
            )
        module._buffers[short] = module._buffers[short].to(getattr(torch, dtype))


def _check_runs(folder: Path, model: nn.Module) -> None:
    """Two tokens through the model: every kernel has checked its tensors
    above, so a mismatch left (widths that do not chain, a head count that
    does not divide) is a Python error here, said in one line."""
    ids = torch.zeros((1, 2), dtype=torch.long)
    try:
        with torch.no_grad():
            model(input_ids=ids)
    except (RuntimeError, ValueError, TypeError, IndexError, ZeroDivisionError) as err:
        raise CorruptModelError(
            f"{folder}: the rebuilt model does not run ({first_line(err)}); its manifest and "
            "weights do not fit together."
        ) from None
