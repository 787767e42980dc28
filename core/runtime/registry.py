"""Every runtime a configuration can be measured on, in one place, with one
vocabulary: the key is what the CLI's ``--backend`` takes, what the window's
Run on combo stores, and what a RunRecord's ``backend`` field holds.

Pure data, imported by the CLI's parser without torch; putting a model on
a runtime (compiling it, or building its ONNX graph) is core.jobs.on_runtime.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

from core.model_kinds import CAUSAL_LM, SEQUENCE_CLASSIFICATION


@dataclass(frozen=True)
class Runtime:
    key: str  # the one vocabulary: CLI flag value, combo data, RunRecord.backend
    label: str  # what a person reads
    onnx: bool = False  # measured on an ONNX graph exported from the built model
    int8: bool = False  # the graph quantised by ONNX Runtime's quantize_dynamic
    # Static int8: the graph quantised by quantize_static (QDQ), activation ranges
    # calibrated on the calibration split with this method (core.onnx.int8_static).
    calibration: str = ""
    # Weight-only int8 / int4 through ONNX Runtime's MatMulNBits (core.onnx.nbits).
    weight_bits: int = 0
    # The fused graph of onnxruntime-genai's builder (core.onnx.fused) instead of
    # our traced one: fp32, or weight_bits through the same MatMulNBits blocks.
    fused: bool = False
    compiled: bool = False  # decode step compiled by torch.compile
    # The model kinds it runs (core.model_kinds).
    tasks: frozenset[str] = frozenset({CAUSAL_LM})


def _static(method: str, name: str) -> Runtime:
    return Runtime(
        f"ort-int8-static-{method}",
        f"ONNX Runtime int8 static ({name})",
        onnx=True,
        calibration=method,
    )


RUNTIMES: dict[str, Runtime] = {
    r.key: r
    for r in (
        Runtime("torch", "PyTorch eager", tasks=frozenset({CAUSAL_LM, SEQUENCE_CLASSIFICATION})),
        Runtime("torch-compile", "PyTorch compiled", compiled=True),
        Runtime("ort", "ONNX Runtime", onnx=True),
        Runtime("ort-int8", "ONNX Runtime int8", onnx=True, int8=True),
        # In the dev split's order, best first (benchmarks/ort_static_int8.py).
        _static("entropy", "Entropy"),
        _static("minmax", "MinMax"),
        _static("percentile", "Percentile"),
        Runtime("ort-w8", "ONNX Runtime int8 weight-only (MatMulNBits)", onnx=True, weight_bits=8),
        Runtime("ort-w4", "ONNX Runtime int4 weight-only (MatMulNBits)", onnx=True, weight_bits=4),
        Runtime("ort-fused", "ONNX Runtime fused graph (GQA)", onnx=True, fused=True),
        Runtime(
            "ort-fused-w8",
            "ONNX Runtime fused graph (GQA), int8 weight-only",
            onnx=True,
            weight_bits=8,
            fused=True,
        ),
        Runtime(
            "ort-fused-w4",
            "ONNX Runtime fused graph (GQA), int4 weight-only (GPTQ, int8 head)",
            onnx=True,
            weight_bits=4,
            fused=True,
        ),
    )
}
DEFAULT_RUNTIME = "torch"


class UnknownRuntimeError(ValueError):
    """A runtime key that is not registered."""


def runtime(key: str) -> Runtime:
    try:
        return RUNTIMES[key]
    except (KeyError, TypeError):
        raise UnknownRuntimeError(
            f"unknown runtime {key!r}; choose one of {', '.join(RUNTIMES)}"
        ) from None


def label(key: str) -> str:
    """The runtime's name for people; an unknown key (an old record) as it is."""
    return RUNTIMES[key].label if key in RUNTIMES else key


def run_title(name: str, key: str) -> str:
    """A configuration's name with its runtime, unless it is PyTorch eager."""
    return name if key == DEFAULT_RUNTIME else f"{name} [{label(key)}]"


def check_supports(key: str, task: str) -> Runtime:
    """The runtime, or a one-line refusal when it cannot run this model kind
    (``task``: a LoadedModel's ``task``)."""
    chosen = runtime(key)
    reason = unavailable(key)
    if reason:
        raise UnknownRuntimeError(reason)
    if task not in chosen.tasks:
        raise UnknownRuntimeError(
            f"{chosen.label} runs causal language models here; a classifier runs on PyTorch eager"
        )
    return chosen


def unavailable(key: str) -> str | None:
    """Why runtime ``key`` cannot run in this installation, or None. The
    desktop bundle (sys.frozen) has no compiled runner: inductor builds C++
    with a compiler and the Python and torch headers, which it does not carry."""
    if runtime(key).compiled and getattr(sys, "frozen", False):
        return (
            f"{runtime(key).label} is not available in the desktop bundle (torch.compile needs "
            "a C++ compiler and headers); choose PyTorch eager or ONNX Runtime, or run from a "
            "source checkout"
        )
    return None
