"""Exporting a model: ONNX graphs (and, beside them, the other formats)."""
