"""Export a chosen configuration: a Hugging Face folder (safetensors) that
loads back, an ONNX model with a KV cache checked in ONNX Runtime, a report
for stakeholders, written atomically. Formats are registered by name in
``core.export.formats``."""
