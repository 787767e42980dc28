"""Building ONNX graphs of a configuration: the traced graph with its KV cache,
the int8 form (SmoothQuant, then quantize_dynamic), the fidelity check
against PyTorch on real text, and the cache of checked exports. Runs of the
graphs are core.runtime.onnx's."""
