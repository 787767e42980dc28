"""Load a folder written by ``hf_folder.py`` whose manifest says transformers
cannot load it alone (quantized or factored modules, per-module head counts).

The frame is the model transformers builds from the folder's config; the
manifest's modules are built from their tensors by ``module_kinds`` (an
allow-list: nothing is unpickled), recorded attributes are set, and every
other tensor is put in place. Every tensor the frame expects must come from
the file: a missing one is an error, never a random weight.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from core.errors import CorruptModelError
from core.export.module_kinds import KINDS
from core.export.skeleton import build_config, build_skeleton
from core.passes.linear_layers import replace_module


def _split(key: str) -> tuple[str, str]:
    module, _, name = key.rpartition(".")
    return module, name


def load_workbench_folder(folder: Path, manifest: dict) -> nn.Module:
    """The exported model on the CPU, in the dtypes it was stored in."""
    from safetensors.torch import load_file
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(folder)
    try:
        # Fresh, aligned copies: the tensors load_file returns may sit at any
        # byte offset of one buffer, and torch's int8 packed-matmul kernel
        # crashed (segfault) on such an int8 weight.
        tensors = {k: v.clone() for k, v in load_file(str(folder / manifest["weights"])).items()}
    except (OSError, RuntimeError) as err:
        raise CorruptModelError(f"{folder}: weights cannot be read ({err}).") from err
    overrides = manifest.get("build_overrides", {})
    model = build_skeleton(config, overrides, device="cpu")

    entries = manifest["modules"]
    owned: set[str] = set()
    built: dict[str, nn.Module] = {}
    for entry in reversed(entries):  # children (low-rank factors) before their parent
        kind = KINDS.get(entry["kind"])
        if kind is None:
            raise CorruptModelError(f"{folder}: unknown module kind {entry['kind']!r}")
        name = entry["name"]
        own = {
            key.removeprefix(name + "."): value
            for key, value in tensors.items()
            if _split(key)[0] == name
        }
        owned.update(f"{name}.{short}" for short in own)
        children = [built.pop(f"{name}.{i}") for i in range(entry["attributes"].get("children", 0))]
        built[name] = kind.build(own, entry["attributes"], children)
    for name, module in built.items():
        replace_module(model, name, module)

    expected = {
        f"{m}.{n}" if m else n
        for m, module in model.named_modules()
        if not any(m == e["name"] or m.startswith(e["name"] + ".") for e in entries)
        for n, t in list(module.named_parameters(recurse=False))
        + [
            (b, t)
            for b, t in module.named_buffers(recurse=False)
            if b not in module._non_persistent_buffers_set
        ]
    }
    aliases = manifest.get("aliases", {})
    missing = expected - set(tensors) - set(aliases)
    if missing:
        raise CorruptModelError(
            f"{folder}: {len(missing)} tensors missing from the weights (first: {min(missing)})."
        )
    for key in sorted(set(tensors) - owned):
        module_name, short = _split(key)
        module = model.get_submodule(module_name)
        if short in module._parameters:
            module._parameters[short] = nn.Parameter(tensors[key], requires_grad=False)
        elif short in module._buffers:
            module._buffers[short] = tensors[key]
        else:
            raise CorruptModelError(f"{folder}: {key} has no place in this architecture")
    for alias, target in aliases.items():
        alias_module, alias_name = _split(alias)
        target_module, target_name = _split(target)
        shared = getattr(model.get_submodule(target_module), target_name)
        setattr(model.get_submodule(alias_module), alias_name, shared)
    for module_name, values in manifest.get("attributes", {}).items():
        module = model.get_submodule(module_name)
        for key, value in values.items():
            setattr(module, key, value)
    for key, dtype in manifest.get("buffer_dtypes", {}).items():
        module_name, short = _split(key)
        module = model.get_submodule(module_name)
        module._buffers[short] = module._buffers[short].to(getattr(torch, dtype))
    if overrides:  # the frame was built from adjusted values; the real config rules
        frame_config = build_config(config, overrides)
        for module in model.modules():
            if getattr(module, "config", None) is not None and type(module.config) is type(
                frame_config
            ):
                module.config = config
    return model.eval()
