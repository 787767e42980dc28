"""An int8 head for the int4 fused graph (``core.onnx.fused``).

The builder rounds the LM head to int4 like every other matrix, and a tied
head is also the token embedding (``GatherBlockQuantized`` reads the same
blocks). On the default model the int4 head alone cost about 10 points of
dev perplexity: +21.9% for the int4 graph, +12.1% with the head (and the
tied embedding) in int8 blocks, for 14 MB more on disk and read per token
(benchmarks/fused_choices.py --head-bits). llama.cpp's int4 types keep the
output matrix wider for the same reason.

The int8 blocks are ONNX Runtime's own (``MatMulNBitsQuantizer`` on a
one-node graph holding the head's float weight, symmetric, blocks of
``block``), the rounding the int8 fused graph gives its head. What is
written by hand is only the rewiring: the head node reads them at 8 bits,
and a tied embedding's ``GatherBlockQuantized`` reads the same blocks (its
8-bit layout is MatMulNBits', with the same default zero point of 128).
"""

from __future__ import annotations

from pathlib import Path

from core.onnx.quiet import info_logs_off

HEAD_INPUT_PREFIX = "lm_head."  # the builder's head: MatMulNBits on lm_head.MatMul.weight_Q4
INT8 = 8  # the bits the head is written in


class HeadNotFoundError(ValueError):
    """The builder's graph has no head where this module looks for it."""


def int8_head_blocks(weight, block: int, accuracy_level: int):
    """ONNX Runtime's int8 MatMulNBits blocks of ``weight`` [out, in]:
    (B uint8 [out, in/block, block], scales float32 [out, in/block])."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    matrix = weight.detach().float().cpu().numpy().T  # MatMul's [in, out]
    rows, columns = matrix.shape
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"], name="head")],
        "head",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, rows])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, columns])],
        [numpy_helper.from_array(np.ascontiguousarray(matrix), "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    quantizer = MatMulNBitsQuantizer(
        model, bits=INT8, block_size=block, is_symmetric=True,
        accuracy_level=accuracy_level, op_types_to_quantize=("MatMul",),
    )  # fmt: skip
    # a block of zeros has scale 0; the quantiser logs each node at INFO
    with np.errstate(divide="ignore", invalid="ignore"), info_logs_off():
        quantizer.process()
    quantized = quantizer.model.model
    (node,) = [n for n in quantized.graph.node if n.op_type == "MatMulNBits"]
    stored = {i.name: numpy_helper.to_array(i) for i in quantized.graph.initializer}
    if len(node.input) > 3 and node.input[3]:
        raise ValueError("symmetric int8 blocks came with zero points")  # not the layout assumed
    return stored[node.input[1]], stored[node.input[2]]


def write_int8_head(model, path: Path, block: int, accuracy_level: int) -> None:
    """Rewrite the fused graph at ``path``: its head (and a tied embedding)
    in int8 blocks of ``block``, rounded from ``model``'s float head."""
    import numpy as np
    import onnx
    from onnx import numpy_helper

    graph_model = onnx.load(str(path))
    graph = graph_model.graph
    heads = [
        n for n in graph.node
        if n.op_type == "MatMulNBits" and n.input[1].startswith(HEAD_INPUT_PREFIX)
    ]  # fmt: skip
    if len(heads) != 1:
        raise HeadNotFoundError(
            f"the fused graph has {len(heads)} MatMulNBits heads reading {HEAD_INPUT_PREFIX}*, "
            "not one: its head cannot take int8 blocks"
        )
    (head,) = heads
    old_blocks, old_scales = head.input[1], head.input[2]
    packed, scales = int8_head_blocks(model.get_output_embeddings().weight, block, accuracy_level)
    blocks_name = old_blocks.removesuffix("_Q4") + "_Q8"
    scales_name = old_scales + "_int8"
    graph.initializer.extend(
        [numpy_helper.from_array(packed, blocks_name), numpy_helper.from_array(scales, scales_name)]
    )
    head.input[1], head.input[2] = blocks_name, scales_name
    _drop_zero_points(head)  # symmetric int8: an asymmetric int4 grid's (k_quant) would not fit
    _set_int(head, "bits", INT8)
    rows, width = packed.shape[0], packed.shape[1] * packed.shape[2]
    for node in list(graph.node):  # the tied embedding: a Reshape of the head's blocks, gathered
        if node.op_type != "Reshape" or node.input[0] != old_blocks:
            continue
        shape_name = f"{blocks_name}_rows"
        graph.initializer.append(
            numpy_helper.from_array(np.array([rows, width], dtype=np.int64), shape_name)
        )
        node.input[0], node.input[1] = blocks_name, shape_name
        _forget_shape(graph, node.output[0])  # the builder recorded the int4 rows' width
        for gather in graph.node:
            if gather.op_type == "GatherBlockQuantized" and gather.input[0] == node.output[0]:
                gather.input[2] = scales_name
                _drop_zero_points(gather)
                _set_int(gather, "bits", INT8)
    read = {name for node in graph.node for name in node.input}
    for constant in [n for n in graph.node if n.op_type == "Constant"]:
        if not set(constant.output) & read:  # the int4 rows' shape, now read by nothing
            graph.node.remove(constant)
    unread = [i for i in graph.initializer if i.name not in read]
    for initializer in unread:  # the int4 blocks nothing reads any more
        graph.initializer.remove(initializer)
    data = path.with_name(f"{path.name}.data")
    data.unlink(missing_ok=True)
    onnx.save_model(graph_model, str(path), save_as_external_data=True, location=data.name)


def _set_int(node, name: str, value: int) -> None:
    for attribute in node.attribute:
        if attribute.name == name:
            attribute.i = value
            return
    raise HeadNotFoundError(f"{node.name} has no {name} attribute")


def _drop_zero_points(node) -> None:
    """No zero points (input 3): the blocks' own default, 128 at 8 bits."""
    if len(node.input) > 3:
        node.input[3] = ""
        while node.input and not node.input[-1]:
            node.input.pop()


def _forget_shape(graph, name: str) -> None:
    for info in [v for v in graph.value_info if v.name == name]:
        graph.value_info.remove(info)
