"""Each expert's weight matrix stored on its own in the graph.

A mixture of experts keeps a layer's experts as one 3-D tensor
(``core.onnx.dense_experts``), so the traced graph reads expert ``e``'s
matrix through ``Gather(experts, e)`` at every step. ONNX Runtime's
quantisers only quantise a ``MatMul`` whose weight is a stored 2-D tensor:
they would leave every expert in fp32 under an int8 or int4 name, and the
step would slice the tensor each time. The slices are stored instead (the
same bytes: the 3-D tensor is dropped once nothing reads it), and
``untie_transposed_weights`` then stores their transposes.
"""

from __future__ import annotations

from core.onnx.stored import drop_unread, store


def fold_expert_slices(graph) -> int:
    """Replace ``Gather(stored tensor, constant index)`` on axis 0 by the
    stored slice; drop stored tensors nothing reads any more. Returns how
    many slices were stored."""
    import numpy as np
    import onnx_ir as ir

    folded = 0
    sources = set()
    for node in list(graph):
        if node.op_type != "Gather" or node.domain not in ("", "ai.onnx"):
            continue
        data, index = node.inputs[0], node.inputs[1]
        if data is None or not data.is_initializer() or data.const_value is None:
            continue
        if len(data.shape or ()) < 3 or node.attributes.get_int("axis", 0) != 0:
            continue  # an embedding (2-D) is gathered by token, not sliced
        position = _constant(index)
        if position is None or position.ndim != 0:
            continue
        array = np.ascontiguousarray(data.const_value.numpy()[int(position)])
        weight = store(graph, f"{data.name}.{int(position)}", array, data.dtype)
        ir.convenience.replace_all_uses_with(node.outputs[0], weight)
        graph.remove(node, safe=True)
        sources.add(data)
        folded += 1
    drop_unread(graph, sources)
    return folded


def _constant(value):
    """The numpy value of a stored or ``Constant``-made tensor, else None."""
    if value is None:
        return None
    if value.const_value is not None:
        return value.const_value.numpy()
    producer = value.producer()
    if producer is not None and producer.op_type == "Constant":
        attribute = producer.attributes.get("value")
        if attribute is not None:
            return attribute.value.numpy()
    return None
