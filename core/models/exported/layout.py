"""The names in an exported folder: what the writer (core.export.hf_folder)
writes and the loader (core.models.exported) reads."""

MANIFEST = "workbench_export.json"
MANIFEST_FORMAT = 1
PLAIN_WEIGHTS = "model.safetensors"
OWN_WEIGHTS = "workbench_model.safetensors"
