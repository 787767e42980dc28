"""The exporters' and quantisers' INFO logs, off while they run.

torch.onnx's IR passes and ONNX Runtime's MatMulNBits quantiser log every
node at INFO (4,300 lines for one int4 export of the default model, in the
CLI's output and the benchmarks' files); what matters reaches the user as
progress, errors and the export report instead.

Three of ONNX Runtime's quantiser messages are boilerplate on every build
here and read like failures on a successful one (a sweep counted them): its
advice to run its pre-processing script, the opset-21 upgrade MatMulNBits
makes for int4 ("may not be a valid model": every graph here is then checked
against PyTorch by the fidelity gate), and the int8 fused build's "Gather
only supports 4 bits" (the embedding stays float). Those are dropped; any
other warning or error still shows."""

from __future__ import annotations

import contextlib
import logging

BOILERPLATE = (
    "Please consider to run pre-processing before quantization",
    "The opset of the input model is under 21 and doesn't support int4 data type",
    # Logged at ERROR by the int8 fused build, which leaves the token
    # embedding's Gather as it is (the graph is then checked as usual).
    "Gather only supports 4 bits quantization",
)
# The loggers they are written on: quantize_dynamic's on the root logger.
BOILERPLATE_LOGGERS = ("", "onnxruntime.quantization.matmul_nbits_quantizer")


def _not_boilerplate(record: logging.LogRecord) -> bool:
    return not str(record.msg).startswith(BOILERPLATE)


@contextlib.contextmanager
def info_logs_off():
    loggers = [logging.getLogger(name) for name in BOILERPLATE_LOGGERS]
    logging.disable(logging.INFO)
    for logger in loggers:
        logger.addFilter(_not_boilerplate)
    try:
        yield
    finally:
        for logger in loggers:
            logger.removeFilter(_not_boilerplate)
        logging.disable(logging.NOTSET)
