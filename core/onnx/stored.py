"""Helpers for the graph's stored tensors (initializers), shared by the
rewrites that run on a traced graph before it is saved."""

from __future__ import annotations


def store(graph, name: str, array, dtype):
    """Register ``array`` (numpy) as a stored tensor ``name`` of ``dtype``
    (an onnx_ir DataType); returns its value, to be wired into nodes."""
    import onnx_ir as ir

    value = ir.Value(
        name=name,
        shape=ir.Shape(array.shape),
        type=ir.TensorType(dtype),
        const_value=ir.tensor(array, name=name),
    )
    graph.register_initializer(value)
    return value


def drop_unread(graph, values) -> None:
    """Remove the stored tensors among ``values`` that nothing reads."""
    for value in values:
        if not value.uses() and not value.is_graph_output() and value.name in graph.initializers:
            del graph.initializers[value.name]
