"""Compression Workbench engine: loading, running, measuring, compressing.

Nothing below this package imports Qt, and importing it stays cheap: torch,
transformers and onnxruntime are imported by the modules that use them.
"""

import os

__version__ = "0.1.0"

# ONNX Runtime 1.31's Linux builds keep a telemetry store and device id in
# ~/.cache/Microsoft/DeveloperTools/.onnxruntime: files the workbench did not
# make, outside its folders. Its own switch turns that off; it is read when
# onnxruntime loads, which is always after this package. A user's own
# setting is kept.
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
