"""Which generation loop runs a model: PyTorch eager, PyTorch compiled
(``torch.compile`` with a static cache), or ONNX Runtime for an exported
graph. All yield the same TokenStep events."""

from __future__ import annotations

TORCH_RUNNER = "torch-eager"
COMPILED_RUNNER = "torch-compile"  # core.runtime.compiled_runner


def is_onnx_runtime(model) -> bool:
    return hasattr(model, "session") and hasattr(model, "runner_name")


def steps_function(model, runner: str = TORCH_RUNNER):
    """The ``generate_steps`` for ``model`` (same signature for every runner).
    ``runner`` chooses between the PyTorch loops; an ONNX Runtime model has one."""
    if is_onnx_runtime(model):
        from core.runtime.onnx.ort_runner import generate_steps

        return generate_steps
    if runner == COMPILED_RUNNER:
        from core.runtime.compiled_runner import generate_steps

        return generate_steps
    from core.runtime.torch_runner import generate_steps

    return generate_steps


LOOKUP_REFUSAL = (
    "prompt lookup runs on the eager PyTorch and ONNX Runtime runners (the compiled "
    "decode step takes one token at a time)"
)


def lookup_steps_function(model, runner: str = TORCH_RUNNER):
    """The ``lookup_steps`` (prompt-lookup drafts, ``core.runtime.prompt_lookup``)
    for ``model``; the compiled runner has none."""
    if is_onnx_runtime(model):
        from core.runtime.onnx.ort_runner import lookup_steps

        return lookup_steps
    if runner == COMPILED_RUNNER:
        raise ValueError(LOOKUP_REFUSAL)
    from core.runtime.torch_runner import lookup_steps

    return lookup_steps


def runner_name(model, runner: str = TORCH_RUNNER) -> str:
    return model.runner_name if is_onnx_runtime(model) else runner
