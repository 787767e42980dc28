"""Export a chosen configuration: a Hugging Face folder (safetensors) that
loads back, a report for stakeholders, written atomically. Formats are
registered by name in ``core.export.formats`` so ONNX can join them."""
