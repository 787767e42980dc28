"""The ONNX Runtime backend: the session wrapper that looks like a
transformers model (core.runtime.onnx.ort_model) and its token loop. The
graphs it runs are built by core.onnx."""
