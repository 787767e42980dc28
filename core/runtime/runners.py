"""Which generation loop runs a model: PyTorch's, or ONNX Runtime's for an
exported graph. Both yield the same TokenStep events."""

from __future__ import annotations

TORCH_RUNNER = "torch-eager"


def is_onnx_runtime(model) -> bool:
    return hasattr(model, "session") and hasattr(model, "runner_name")


def steps_function(model):
    """The ``generate_steps`` for ``model`` (same signature for both backends)."""
    if is_onnx_runtime(model):
        from core.runtime.ort_runner import generate_steps

        return generate_steps
    from core.runtime.torch_runner import generate_steps

    return generate_steps


def runner_name(model) -> str:
    return model.runner_name if is_onnx_runtime(model) else TORCH_RUNNER
