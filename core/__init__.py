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


def _cache_folder(name: str) -> str:
    """A folder in the workbench's cache (core.models.default_model.cache_root)."""
    root = os.environ.get("WORKBENCH_CACHE_DIR")
    if not root:
        import platformdirs

        root = platformdirs.user_cache_dir("compression-workbench")
    return os.path.join(root, name)


# matplotlib (the report's charts) keeps a font cache in ~/.config and
# ~/.cache, and torch.compile's inductor in $TMPDIR/torchinductor_<user>:
# both are kept in the workbench's cache instead. A user's own settings stay.
os.environ.setdefault("MPLCONFIGDIR", _cache_folder("matplotlib"))
os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", _cache_folder("torchinductor"))
