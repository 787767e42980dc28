"""Load a folder written by the ONNX export (``model.onnx`` + config +
tokenizer) as a model that runs in ONNX Runtime.

The result is a LoadedModel like any other: its ``model`` is an
``OrtCausalLM``, which generation, the benchmark, perplexity and fidelity
run unchanged. Its description is read from the config and the graph's
stored weights (counted from the file, not estimated).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from core.errors import CorruptModelError, NotAModelError
from core.models.config_check import check_config
from core.models.config_read import read_config
from core.models.description import ModelDescription, bytes_on_disk
from core.models.tokenizer_fit import check_tokenizer_fits
from core.runtime.onnx.ort_errors import is_ort_error, ort_reason

MODEL_FILE = "model.onnx"


def is_onnx_folder(folder: Path) -> bool:
    return (folder / MODEL_FILE).is_file() and (folder / "config.json").is_file()


def _stored_weights(path: Path) -> tuple[int, dict[str, int]]:
    """(element count, bytes by dtype) of the graph's initializers."""
    import numpy as np
    import onnx
    from onnx import helper

    model = onnx.load(str(path), load_external_data=False)
    count, by_dtype = 0, Counter()
    for tensor in model.graph.initializer:
        n = int(np.prod(tensor.dims)) if tensor.dims else 1
        dtype = helper.tensor_dtype_to_np_dtype(tensor.data_type)
        count += n
        by_dtype[str(dtype)] += n * dtype.itemsize
    return count, dict(by_dtype)


def graph_dtype_refusal(dtype: str | None) -> str | None:
    """A graph computes in the types it was built with: a dtype other than
    its float32 activations is refused, not silently ignored."""
    if dtype in (None, "float32"):
        return None
    return (
        f"an exported ONNX graph runs in the types it was built with (float32 activations); "
        f"--dtype {dtype} applies to PyTorch models only."
    )


def load_onnx_folder(folder: Path, source: str, device: str = "auto", notes=None):
    from transformers import GenerationConfig

    from core.models.loading import LoadedModel, read_tokenizer
    from core.runtime.onnx.ort_model import OrtCausalLM

    if not is_onnx_folder(folder):
        raise NotAModelError(f"{folder} holds no exported model ({MODEL_FILE} and config.json).")
    config = _read_config(folder)
    tokenizer = read_tokenizer(folder)
    try:
        generation = GenerationConfig.from_pretrained(folder)
    except (OSError, ValueError):  # none stored, or unreadable: the config's defaults
        generation = GenerationConfig.from_model_config(config)
    try:
        model = OrtCausalLM(folder / MODEL_FILE, config, generation, device=device)
    except Exception as err:
        if not is_ort_error(err):
            raise
        raise CorruptModelError(
            f"{folder / MODEL_FILE}: ONNX Runtime cannot open it: {ort_reason(err)}"
        ) from err
    # against the vocabulary the graph was just checked to have
    notes = list(notes or []) + check_tokenizer_fits(tokenizer, config.vocab_size, str(folder))
    weights, by_dtype = _stored_weights(folder / MODEL_FILE)
    heads = getattr(config, "num_attention_heads", None) or getattr(config, "n_head", None)
    description = ModelDescription(
        source=source,
        architecture=f"{(config.architectures or [config.model_type])[0]} (ONNX Runtime)",
        model_type=config.model_type,
        layers=getattr(config, "num_hidden_layers", None) or getattr(config, "n_layer", None),
        hidden_size=getattr(config, "hidden_size", None) or getattr(config, "n_embd", None),
        attention_heads=heads,
        kv_heads=getattr(config, "num_key_value_heads", None) or heads,
        intermediate_size=getattr(config, "intermediate_size", None),
        vocab_size=getattr(config, "vocab_size", None),
        parameters=weights,
        bytes_by_dtype=by_dtype,
        bytes_in_memory=sum(by_dtype.values()),
        bytes_on_disk=bytes_on_disk(folder),
        tied_embeddings=False,  # the export stores a tied head untied (see onnx_graph)
        device=f"{model.device} ({model.provider})",
        notes=notes
        + [
            f"runs in ONNX Runtime ({model.runner_name})",
            "parameters: the elements the graph stores (an untied head again, packed int4 "
            "and scales as stored), not the source model's count",
        ],
    )
    return LoadedModel(model, tokenizer, source, folder, description)


def _read_config(folder: Path):
    """The folder's config, its sizes checked (they shape the cache buffers)."""
    config = read_config(folder)
    check_config(config, str(folder))  # sizes only: the weights are the graph's
    return config
