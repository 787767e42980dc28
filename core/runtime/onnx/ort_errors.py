"""ONNX Runtime's own exceptions, and their messages cut to what a person needs.

onnxruntime raises its errors (a graph that does not parse, an IR version too
new, external data missing or pointing outside the model's folder) as classes
of its pybind module that derive from ``Exception`` alone, not ``RuntimeError``
or ``OSError``, so they are recognised here by that module. Their text starts
with a status code and often quotes a C++ source line and function signature
before the reason; only the reason is kept.
"""

from __future__ import annotations

import re

from core.message_text import one_line

_ORT_MODULE = "onnxruntime.capi.onnxruntime_pybind11_state"
_STATUS = re.compile(r"\[ONNXRuntimeError\]\s*:\s*\d+\s*:\s*\w+\s*:\s*")
_LOADING = re.compile(r"Load model from .*? failed:\s*")  # the caller names the file
# "model.cc:256 onnxruntime::Model::Model(onnx::ModelProto&&, ...) " or
# "tensorprotoutils.cc:461 ValidateExternalDataPathFromDir ": where, then which function.
_SOURCE = re.compile(
    r"(?:/\S*/)?[\w.]+\.(?:cc|cpp|h):\d+\s+"
    r"(?:[\w:<>,&*~\s]*?[\w:~>]+\([^()]*\)(?:\s*const)?\s+|[\w:~]+\s+)"
)


def is_ort_error(err: BaseException) -> bool:
    return type(err).__module__ == _ORT_MODULE


def ort_reason(err: BaseException, limit: int = 300) -> str:
    """The reason ONNX Runtime gave, on one line, without its status prefix and
    C++ source locations."""
    text = _SOURCE.sub("", _LOADING.sub("", _STATUS.sub("", str(err))))
    text = " ".join(text.split())
    return one_line(text)[:limit] or type(err).__name__
