"""The "gguf" export format: the configuration as one GGUF file for llama.cpp
and the programs built on it (Ollama, LM Studio), with its tokenizer and chat
template, beside an Ollama Modelfile. Tensor names, q/k row order and
metadata follow llama.cpp's converter (convert_hf_to_gguf.py) for the
family; the types are written with the ``gguf`` package's quantizers, or
take the configuration's own int8/int4 values where the type's grid holds
them. The file is read back and every tensor compared with the
configuration's weights before it is kept (``gguf_check``)."""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path

import gguf

from core.export.formats import ExportInputs, FormatWritten, register_format
from core.export.gguf_check import check_gguf
from core.export.gguf_encode import (
    DEFAULT_TYPE,
    KEPT,
    ROUNDED,
    TYPES,
    check_type,
    encode,
    tensor_type,
)
from core.export.gguf_names import (
    arch_name,
    family_of,
    gguf_name,
    read_shapes,
    rope_row_order,
    write_architecture,
)
from core.export.gguf_tokenizer import write_tokenizer
from core.export.gguf_weights import configuration_weights
from core.progress import CancelToken, Progress, ProgressSink

SUBFOLDER = "gguf"


def file_name(gguf_type: str) -> str:
    return f"model-{gguf_type.upper()}.gguf"


def _model_name(inputs: ExportInputs) -> str:
    source = str(inputs.original.source)
    base = Path(source).name or source
    if base == "default":
        from core.models.default_model import MODEL_NAME

        base = MODEL_NAME
    return f"{base} ({inputs.recipe.name})"


def _notes(config, weights, fallbacks: list[str]) -> list[str]:
    notes = []
    stored = {w.stored for w in weights.values()}
    if any(s.startswith("low-rank") for s in stored):
        notes.append(
            "low-rank factor pairs are multiplied back: the GGUF holds full matrices "
            "(no size saving from the factorisation)"
        )
    if any("W8A8" in s for s in stored):
        notes.append(
            "W8A8 layers keep their int8 weights; llama.cpp quantises activations its own way "
            "(per block of 32), not per token as measured here"
        )
    if fallbacks:
        notes.append(f"{len(fallbacks)} matrices stored as F16: {fallbacks[0]}")
    window = getattr(config, "sliding_window", None)
    uses_window = getattr(config, "use_sliding_window", True)
    if window and uses_window and window < config.max_position_embeddings:
        notes.append(
            f"sliding-window attention (window {window}) is not written: llama.cpp attends to "
            f"the whole context, so outputs match only up to {window} tokens"
        )
    return notes


def _group_types(checks) -> list[dict]:
    """Per-tensor types folded by role: blk.N.attn_q.weight -> blk.*.attn_q.weight."""
    groups: dict[tuple, list[str]] = defaultdict(list)
    for c in checks:
        block = re.match(r"blk\.(\d+)\.(.*)", c.name)
        role = f"blk.*.{block.group(2)}" if block else c.name
        groups[(role, c.type, c.how)].append(block.group(1) if block else "")
    rows = []
    for (role, qtype, how), blocks in groups.items():
        rows.append(
            {
                "tensor": role,
                "type": qtype,
                "how": how,
                "count": len(blocks),
                "blocks": [int(b) for b in blocks if b],
            }
        )
    return rows


def _summary(gguf_type, path_name, size, checks, tokenizer, notes) -> str:
    kept = sum(c.how == KEPT for c in checks)
    rounded = sum(c.how == ROUNDED for c in checks)
    types = sorted({c.type for c in checks})
    worst = max((c.max_over_half_step or 0) for c in checks)
    parts = [
        f"{SUBFOLDER}/{path_name} ({gguf_type.upper()}, {size / 1e6:.1f} MB; "
        f"tensor types {', '.join(types)})",
    ]
    if kept:
        keep = "tensor keeps" if kept == 1 else "tensors keep"
        parts.append(f"{kept} {keep} the configuration's own int8/int4 values")
    if rounded:
        parts.append(f"{rounded} rounded onto the grid by the gguf package")
    parts.append(
        "read back and checked against the configuration's weights"
        + (f" (worst block error {worst:.3g} half grid steps)" if rounded or kept else "")
    )
    parts.append(f"tokenizer {tokenizer['source']} (pre-tokenizer {tokenizer['pre']})")
    return "GGUF for llama.cpp: " + "; ".join(parts + notes)


def check_gguf_request(config, gguf_type: str) -> None:
    """Refuse an unknown type or an unsupported family before the model is built."""
    check_type(gguf_type)
    family_of(config)


@register_format("gguf")
def write_gguf(
    inputs: ExportInputs, folder: Path, progress: ProgressSink, cancel: CancelToken
) -> FormatWritten:
    gguf_type = check_type(inputs.gguf_type or DEFAULT_TYPE)
    file_type = TYPES[gguf_type][1]
    model = inputs.compressed.model
    config = model.config
    family = family_of(config)
    progress(Progress("Reading the configuration's weights for GGUF", None))
    weights = configuration_weights(model)
    shapes = read_shapes(model, weights)
    name_map = gguf.get_tensor_name_map(family.arch, shapes.layers)
    out_dir = folder / SUBFOLDER
    out_dir.mkdir()
    path = out_dir / file_name(gguf_type)

    writer = gguf.GGUFWriter(path, arch_name(family))
    writer.add_type(gguf.GGUFType.MODEL)
    writer.add_name(_model_name(inputs))
    write_architecture(writer, family, config, shapes)
    writer.add_file_type(file_type)
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    tokenizer = write_tokenizer(writer, inputs.original, shapes.vocab)

    expected, fallbacks = {}, []
    for index, (hf_name, weight) in enumerate(weights.items()):
        cancel.raise_if_cancelled()
        progress(Progress(f"Writing GGUF tensors ({gguf_type.upper()})", index / len(weights)))
        name = gguf_name(name_map, hf_name)
        order = None
        if family.permute_qk and re.search(r"\.(q|k)_proj\.(weight|bias)$", hf_name):
            heads = shapes.heads if ".q_proj." in hf_name else shapes.kv_heads
            order = rope_row_order(weight.dense.shape[0], heads)
            weight = weight.reorder_rows(order)
        encoded = encode(name, weight, tensor_type(gguf_type, name))
        writer.add_tensor(name, encoded.data, raw_dtype=encoded.qtype)
        if encoded.note:
            fallbacks.append(f"{name} ({encoded.note})")
        values = weights[hf_name].dense.numpy()
        expected[name] = (hf_name, encoded.how, values, None if order is None else order.numpy())
    progress(Progress("Writing the GGUF file", None))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    cancel.raise_if_cancelled()

    progress(Progress("Reading the GGUF back to check it", None))
    checks = check_gguf(path, expected)
    (out_dir / "Modelfile").write_text(f"FROM ./{path.name}\n")
    notes = _notes(config, weights, fallbacks) + [n for n in (tokenizer.get("note"),) if n]
    size = path.stat().st_size
    return FormatWritten(
        "gguf",
        (f"{SUBFOLDER}/{path.name}", f"{SUBFOLDER}/Modelfile"),
        _summary(gguf_type, path.name, size, checks, tokenizer, notes),
        {
            "file": f"{SUBFOLDER}/{path.name}",
            "gguf_type": gguf_type,
            "architecture": arch_name(family),
            "bytes": size,
            "tokenizer": tokenizer,
            "tensor_types": _group_types(checks),
            "tensors": [c.to_dict() for c in checks],
            "max_abs_error": max(c.max_abs_error for c in checks),
            "max_over_half_step": max((c.max_over_half_step or 0) for c in checks),
            "notes": notes,
        },
    )
