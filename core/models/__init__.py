"""Models: loading (folder, hub id, ONNX, our exports), the default model, the
demo classifier, descriptions and sizes."""
