"""The exporters' and quantisers' INFO logs, off while they run.

torch.onnx's IR passes and ONNX Runtime's MatMulNBits quantiser log every
node at INFO (4,300 lines for one int4 export of the default model, in the
CLI's output and the benchmarks' files); what matters reaches the user as
progress, errors and the export report instead."""

from __future__ import annotations

import contextlib
import logging


@contextlib.contextmanager
def info_logs_off():
    logging.disable(logging.INFO)
    try:
        yield
    finally:
        logging.disable(logging.NOTSET)
