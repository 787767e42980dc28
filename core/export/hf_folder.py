"""Write a compressed PyTorch model as a Hugging Face folder: safetensors
weights, config.json, generation_config.json, the tokenizer, plus
recipe.json, environment.json and our manifest (workbench_export.json).

Which loader a folder needs is decided by comparing the compressed model
with the model transformers builds from its config (``skeleton.py``), not
by a per-pass table, so chains are handled the same way as single passes:
- every module has the class and tensor shapes transformers would build
  (GPT-2's Linear may stand where transformers has Conv1D: its weight is
  written transposed) and every float tensor has one dtype -> a plain
  folder, ``model.safetensors``, which AutoModelForCausalLM loads as is;
- otherwise (int8/int4 packed linears, W8A8 linears, low-rank factor
  pairs, GPT-2 head pruning whose shapes the config cannot express) the
  manifest lists each such module's kind and constructor integers, and the
  weights go to ``workbench_model.safetensors`` so that plain transformers
  refuses the folder (no model.safetensors) instead of silently filling
  the unknown modules with random weights; ``load_exported.py`` rebuilds it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from core.errors import UnsupportedModelError
from core.models.exported.layout import MANIFEST, MANIFEST_FORMAT, OWN_WEIGHTS, PLAIN_WEIGHTS
from core.models.exported.module_kinds import KINDS, has_custom_storage, kind_of, stored_tensors
from core.models.exported.skeleton import scalar_attributes, skeleton_for


@dataclass
class ExportPlan:
    """What the folder will hold, decided before anything is written."""

    tensors: dict[str, torch.Tensor]
    modules: list[dict]  # modules our loader builds: name, kind, attributes
    attributes: dict[str, dict]  # module -> scalar attributes differing from transformers'
    buffer_dtypes: dict[str, str]  # rebuilt (non-persistent) buffers kept in another dtype
    aliases: dict[str, str]  # tied tensor -> the name it is stored under
    build_overrides: dict
    reasons: list[str] = field(default_factory=list)  # why plain transformers cannot load it
    transposed: list[str] = field(default_factory=list)  # Linear weights written as Conv1D

    @property
    def plain(self) -> bool:
        return not self.reasons

    @property
    def cpu_only(self) -> bool:
        return any(KINDS[m["kind"]].cpu_only for m in self.modules)

    @property
    def tensor_bytes(self) -> int:
        return sum(t.nbytes for t in self.tensors.values())


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _same_structure(module: nn.Module, skeleton: nn.Module) -> bool:
    if type(module) is not type(skeleton) or has_custom_storage(module):
        return False
    ours = {k: tuple(v.shape) for k, v in stored_tensors(module).items()}
    theirs = {k: tuple(v.shape) for k, v in stored_tensors(skeleton).items()}
    return ours == theirs


def _is_transposed_conv1d(module: nn.Module, skeleton: nn.Module | None) -> bool:
    from transformers.pytorch_utils import Conv1D

    return (
        type(module) is nn.Linear
        and isinstance(skeleton, Conv1D)
        and tuple(skeleton.weight.shape) == tuple(module.weight.shape[::-1])
        and (module.bias is None) == (skeleton.bias is None)
    )


def plan_export(model: nn.Module, original_config) -> ExportPlan:
    """Compare ``model`` with what transformers builds from its config."""
    skeleton, overrides = skeleton_for(model.config, original_config)
    frame = dict(skeleton.named_modules())
    modules, attributes, covered, transposed, kinds = [], {}, [], [], {}
    reasons = [f"config cannot build these shapes ({', '.join(overrides)})"] if overrides else []
    for name, module in model.named_modules():
        if any(name.startswith(prefix + ".") for prefix in covered):
            continue
        theirs = frame.get(name)
        if theirs is not None and _same_structure(module, theirs):
            changed = {
                key: value
                for key, value in scalar_attributes(module).items()
                if scalar_attributes(theirs).get(key, value) != value
            }
            if changed:
                attributes[name] = changed
            continue
        kind = kind_of(module)
        if kind is None:
            raise UnsupportedModelError(
                f"cannot export {name or 'the model'}: {type(module).__name__} is not a module "
                "type transformers builds from this config or our loader knows."
            )
        modules.append({"name": name, "kind": kind.name, "attributes": kind.attributes(module)})
        if has_custom_storage(module):
            covered.append(name)
        if _is_transposed_conv1d(module, theirs):
            transposed.append(name)
        else:
            kinds[kind.name] = kinds.get(kind.name, 0) + 1
    reasons += [f"{count} {kind} module(s)" for kind, count in kinds.items()]
    changed = sorted({key for values in attributes.values() for key in values})
    if changed:
        reasons.append(
            f"{len(attributes)} module(s) whose {', '.join(changed)} the config cannot say"
        )
    unknown = set(frame) - set(dict(model.named_modules())) - {""}
    if unknown:
        raise UnsupportedModelError(
            f"cannot export: modules {sorted(unknown)[:3]} of the architecture are missing."
        )

    tensors, aliases, seen = {}, {}, {}
    for name, module in model.named_modules():
        if any(name.startswith(prefix + ".") for prefix in covered):
            continue
        for short, tensor in stored_tensors(module).items():
            key = f"{name}.{short}" if name else short
            identity = (tensor.untyped_storage().data_ptr(), tensor.storage_offset(), tensor.shape)
            if identity in seen:
                aliases[key] = seen[identity]
                continue
            seen[identity] = key
            tensors[key] = tensor.detach().cpu().contiguous()

    float_dtypes = {_dtype_name(t.dtype) for t in tensors.values() if t.is_floating_point()}
    if len(float_dtypes) > 1:
        reasons.append(f"mixed float dtypes {sorted(float_dtypes)}")
    skeleton_buffers = dict(skeleton.named_buffers())
    buffer_dtypes = {
        name: _dtype_name(buffer.dtype)
        for name, buffer in model.named_buffers()
        if name in skeleton_buffers
        and name not in tensors
        and buffer.dtype != skeleton_buffers[name].dtype
    }
    tied = getattr(type(model), "_tied_weights_keys", None) or {}
    for alias, target in aliases.items():
        if not (isinstance(tied, dict) and tied.get(alias) == target):
            reasons.append(f"{alias} shares {target}, which transformers does not tie")
    if not reasons:  # plain folder: GPT-2 wants its Conv1D layout back
        for name in transposed:
            tensors[f"{name}.weight"] = tensors[f"{name}.weight"].t().contiguous()
        modules = []
    return ExportPlan(
        tensors, modules, attributes, buffer_dtypes, aliases, overrides, reasons, transposed
    )


def write_hf_folder(
    model: nn.Module,
    tokenizer,
    original_config,
    folder: Path,
    extra_json: dict[str, dict] | None = None,
    check_cancel=lambda: None,
) -> ExportPlan:
    """Write the folder's files into ``folder`` (the atomic writer's temp folder)."""
    import copy

    from safetensors.torch import save_file

    plan = plan_export(model, original_config)
    check_cancel()
    config = copy.deepcopy(model.config)
    config.architectures = [type(model).__name__]
    float_dtypes = [t.dtype for t in plan.tensors.values() if t.is_floating_point()]
    if float_dtypes:
        config.dtype = _dtype_name(max(set(float_dtypes), key=float_dtypes.count))
    weights = PLAIN_WEIGHTS if plan.plain else OWN_WEIGHTS
    save_file(plan.tensors, str(folder / weights), metadata={"format": "pt"})
    check_cancel()
    config.save_pretrained(folder)
    if getattr(model, "generation_config", None) is not None:
        model.generation_config.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    manifest = {
        "format": MANIFEST_FORMAT,
        "loader": "transformers" if plan.plain else "workbench",
        "weights": weights,
        "not_plain_because": plan.reasons,
        "tensor_bytes": plan.tensor_bytes,
        "cpu_only": plan.cpu_only,
        "modules": plan.modules,
        "attributes": plan.attributes,
        "buffer_dtypes": plan.buffer_dtypes,
        "aliases": plan.aliases,
        "build_overrides": plan.build_overrides,
        "conv1d_transposed": plan.transposed if plan.plain else [],
    }
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2))
    for filename, data in (extra_json or {}).items():
        (folder / filename).write_text(json.dumps(data, indent=2))
    return plan
