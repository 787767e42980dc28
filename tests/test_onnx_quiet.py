"""The quantisers' two boilerplate warnings are dropped while a graph is
built (they read like failures on every successful build); any other
warning, and the same ones outside a build, still reach the user."""

from __future__ import annotations

import logging

from core.onnx.quiet import BOILERPLATE, info_logs_off


def test_only_the_known_boilerplate_is_dropped_and_only_during_a_build(caplog):
    nbits = logging.getLogger("onnxruntime.quantization.matmul_nbits_quantizer")
    with caplog.at_level(logging.WARNING):
        with info_logs_off():
            logging.warning(BOILERPLATE[0] + ". Refer to example: ...")
            nbits.warning(BOILERPLATE[1] + ". Force to update it to opset 21, ...")
            nbits.error(BOILERPLATE[2] + ".")
            nbits.warning("a real problem with node MatMul_3")
            logging.info("node 12 of 4300")
        logging.warning(BOILERPLATE[0])
    messages = [record.getMessage() for record in caplog.records]
    assert messages == ["a real problem with node MatMul_3", BOILERPLATE[0]]
