"""The default model's GGUF export read back: by the gguf package against the
configuration's weights (per Q8_0/Q4 block), against the GGUF llama.cpp's
converter made of this model, and by transformers' GGUF loader (a
llama.cpp-compatible reader): logits on report windows and greedy chat text.
Quality only; nothing here is timed.

    .venv/bin/python benchmarks/gguf_readback.py [--type q8_0] [--out DIR]

Last line: {"type", "bytes", "blocks", "blocks_within_half_step", "worst_half_steps",
"max_abs_error", "same_names_as_llama_cpp", "tensors_byte_identical_to_llama_cpp",
"top1", "mean_kl", "max_abs_logit_diff", "greedy_identical"}
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path

import gguf
import numpy as np
import torch

from core.export.gguf_names import gguf_name, read_shapes, rope_row_order
from core.export.gguf_read import read_gguf
from core.export.gguf_weights import configuration_weights
from core.jobs.write_export import run_export
from core.models.default_model import gguf_path
from core.models.loading import load_model
from core.onnx.fidelity import check_windows
from core.passes.recipe import Recipe

PROMPTS = ("What is the capital of France?", "Write a short poem about the sea.")


def block_errors(loaded, path: Path) -> dict:
    """Per block of a Q8_0/Q4_x tensor: max |error| against the configuration,
    in half steps of the block's stored (F16) scale."""
    weights = configuration_weights(loaded.model)
    shapes = read_shapes(loaded.model, weights)
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, shapes.layers)
    tensors = {t.name: t for t in read_gguf(path).tensors}
    blocks = within = 0
    worst = max_abs = 0.0
    for hf_name, weight in weights.items():
        tensor = tensors[gguf_name(names, hf_name)]
        kind = tensor.tensor_type
        values = weight.dense.numpy()
        if ".q_proj." in hf_name or ".k_proj." in hf_name:
            heads = shapes.heads if ".q_proj." in hf_name else shapes.kv_heads
            values = values[rope_row_order(values.shape[0], heads).numpy()]
        error = np.abs(gguf.dequantize(tensor.data, kind) - values)
        max_abs = max(max_abs, float(error.max()))
        if kind.name not in ("Q8_0", "Q4_0", "Q4_1"):
            continue
        raw = np.asarray(tensor.data)
        rows, size = raw.shape[0], gguf.GGML_QUANT_SIZES[kind][1]
        d = np.ascontiguousarray(raw.reshape(rows, -1, size)[..., :2]).view(np.float16)
        half = np.abs(d[..., 0].astype(np.float32)) / 2
        per_block = error.reshape(rows, -1, 32).max(-1)
        blocks += per_block.size
        within += int((per_block <= half).sum())
        worst = max(worst, float((per_block / half).max()))
    return {
        "blocks": blocks,
        "blocks_within_half_step": within,
        "worst_half_steps": worst,
        "max_abs_error": max_abs,
    }


def against_llama_cpp(path: Path) -> dict:
    ours = {t.name: t for t in read_gguf(path).tensors}
    theirs = {t.name: t for t in read_gguf(gguf_path()).tensors}
    identical = [
        n
        for n in theirs
        if n in ours
        and ours[n].tensor_type == theirs[n].tensor_type
        and np.array_equal(np.asarray(ours[n].data), np.asarray(theirs[n].data))
    ]
    return {
        "same_names_as_llama_cpp": set(ours) == set(theirs),
        "tensors": len(ours),
        "tensors_byte_identical_to_llama_cpp": len(identical),
    }


@torch.inference_mode()
def read_by_transformers(loaded, path: Path) -> dict:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, name = path.parent, path.name
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    agree = positions = 0
    kl = max_abs = 0.0
    for window in check_windows(loaded.tokenizer, loaded.model.config):
        a = loaded.model(input_ids=window[None]).logits[0].float()
        b = model(input_ids=window[None]).logits[0].float()
        max_abs = max(max_abs, (a - b).abs().max().item())
        agree += int((a.argmax(-1) == b.argmax(-1)).sum())
        positions += a.shape[0]
        la, lb = a.log_softmax(-1), b.log_softmax(-1)
        kl += (la.exp() * (la - lb)).sum().item()
    greedy = []
    for prompt in PROMPTS:
        chat = [{"role": "user", "content": prompt}]
        texts = []
        for model_, tokenizer_ in ((loaded.model, loaded.tokenizer), (model, tokenizer)):
            ids = tokenizer_.apply_chat_template(
                chat, add_generation_prompt=True, return_tensors="pt", return_dict=True
            )["input_ids"]
            out = model_.generate(ids, max_new_tokens=32, do_sample=False)[0, ids.shape[1] :]
            texts.append((out.tolist(), tokenizer_.decode(out, skip_special_tokens=True)))
        greedy.append(
            {
                "prompt": prompt,
                "identical": texts[0][0] == texts[1][0],
                "configuration": texts[0][1],
                "gguf": texts[1][1],
            }
        )
        print(json.dumps(greedy[-1]), flush=True)
    return {
        "positions": positions,
        "top1": agree / positions,
        "mean_kl": kl / positions,
        "max_abs_logit_diff": max_abs,
        "greedy_identical": all(g["identical"] for g in greedy),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--type", default="q8_0", help="GGUF type (q8_0, q4_0, q4_1, f16, bf16)")
    parser.add_argument("--out", type=Path, default=None, help="keep the export here")
    args = parser.parse_args()
    loaded = load_model("default", device="cpu")
    temp = Path(tempfile.mkdtemp(prefix="gguf-readback-"))
    out = args.out or temp / "export"
    try:
        events = list(run_export(loaded, Recipe(), out, ("gguf",), gguf_type=args.type))
        details = events[-1].details["gguf"]
        print(events[-1].summaries["gguf"], flush=True)
        path = out / details["file"]
        result = {"type": args.type, "bytes": details["bytes"]}
        result |= block_errors(loaded, path)
        result |= against_llama_cpp(path)
        result |= read_by_transformers(loaded, path)
    finally:
        shutil.rmtree(temp, ignore_errors=True)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
