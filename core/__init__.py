"""Compression Workbench engine: loading, running, measuring, compressing.

Nothing below this package imports Qt, and importing it stays cheap: torch,
transformers and onnxruntime are imported by the modules that use them.
"""

__version__ = "0.1.0"
