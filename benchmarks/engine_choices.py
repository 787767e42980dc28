"""Choosing the weight-only graphs' settings (core.onnx.nbits) on the dev
split: block size and compute accuracy level for 8- and 4-bit MatMulNBits,
by quick-protocol perplexity on the dev split (never the report split).
Speed is not measured here (benchmarks/engine_speed.py times the choice).

    .venv/bin/python benchmarks/engine_choices.py [--model default]

Last line: one JSON object, each variant's dev perplexity.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path

from core.evaluate.perplexity import PerplexityProtocol, compute_perplexity
from core.models.loading import load_model
from core.models.loading_onnx import load_onnx_folder
from core.onnx.cache import cached_onnx_export
from core.onnx.export import MODEL_FILE
from core.onnx.nbits import quantize_graph_nbits

VARIANTS = [(bits, block, 4) for bits in (8, 4) for block in (32, 64, 128)] + [(4, 32, 0)]


def _variant(fp32: Path, work: Path, bits: int, block: int, level: int) -> Path:
    folder = work / f"w{bits}-b{block}-a{level}"
    folder.mkdir()
    for path in fp32.iterdir():
        if not path.name.startswith(MODEL_FILE):
            shutil.copy(path, folder / path.name)
    quantize_graph_nbits(fp32 / MODEL_FILE, folder / MODEL_FILE, bits, block, level)
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default")
    args = parser.parse_args()
    loaded = load_model(args.model, device="cpu")
    dev = PerplexityProtocol(split="dev")
    fp32 = cached_onnx_export(loaded)
    results = {
        "fp32": compute_perplexity(
            load_onnx_folder(fp32, "fp32", "cpu").model, loaded.tokenizer, dev
        ).ppl
    }
    print(f"fp32 graph: dev ppl {results['fp32']:.3f}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        for bits, block, level in VARIANTS:
            folder = _variant(fp32, Path(tmp), bits, block, level)
            model = load_onnx_folder(folder, folder.name, "cpu").model
            ppl = compute_perplexity(model, loaded.tokenizer, dev).ppl
            results[folder.name] = ppl
            print(
                f"{folder.name}: dev ppl {ppl:.3f} ({(ppl / results['fp32'] - 1) * 100:+.2f}%)",
                flush=True,
            )
            del model
            shutil.rmtree(folder)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
