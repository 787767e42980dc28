"""``Gemm`` over a stored weight written as ``MatMul`` (and ``Add``).

The exporter writes a linear layer on a 2-D input as ``Gemm`` (weight
transposed by the op, bias added by it): a mixture of experts flattens its
tokens to 2-D before its shared expert and router. ONNX Runtime's weight-only
quantiser (``MatMulNBitsQuantizer``) takes ``MatMul`` only, so those layers
stayed fp32 in an int8 or int4 graph under its name. As ``MatMul`` over the
pre-transposed weight they are quantised like every other layer; the
result is the same up to float rounding.
"""

from __future__ import annotations

from core.onnx.stored import drop_unread, store


def gemm_as_matmul(graph) -> int:
    """Rewrite each plain ``Gemm`` (alpha = beta = 1, A not transposed) whose
    B is a stored 2-D tensor; returns how many were rewritten."""
    import numpy as np
    import onnx_ir as ir

    rewritten = 0
    for node in list(graph):
        if node.op_type != "Gemm" or node.domain not in ("", "ai.onnx"):
            continue
        attributes = node.attributes
        if attributes.get_float("alpha", 1.0) != 1.0 or attributes.get_float("beta", 1.0) != 1.0:
            continue
        if attributes.get_int("transA", 0) or node.outputs[0].is_graph_output():
            continue
        a, b = node.inputs[0], node.inputs[1]
        bias = node.inputs[2] if len(node.inputs) > 2 else None
        if b is None or not b.is_initializer() or b.const_value is None:
            continue
        array = b.const_value.numpy()
        if array.ndim != 2:
            continue
        if attributes.get_int("transB", 0):
            array = np.ascontiguousarray(array.T)
        weight = store(graph, f"{b.name}.matmul", array, b.dtype)
        product = ir.node("MatMul", [a, weight], name=f"{node.name}_matmul")
        replacement = [product]
        if bias is not None:
            replacement.append(ir.node("Add", [product.outputs[0], bias], name=f"{node.name}_bias"))
        output = replacement[-1].outputs[0]
        output.shape, output.type = node.outputs[0].shape, node.outputs[0].type
        graph.insert_before(node, replacement)
        ir.convenience.replace_all_uses_with(node.outputs[0], output)
        graph.remove(node, safe=True)
        drop_unread(graph, [b])
        rewritten += 1
    return rewritten
