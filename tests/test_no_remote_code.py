"""A model folder's own Python (an ``auto_map`` in config.json or
tokenizer_config.json) is never imported: transformers, left to decide,
asks on stdin, and one "y" already waiting in a pipe ran it (a sweep found
it). The load is refused in one line, exit 2, and the code never runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.tiny_models import save_tiny_model

MARK = "import pathlib; pathlib.Path({path!r}).write_text('ran')\n"


def _with_custom_code(folder, marker, file):
    if file == "config.json":
        config = json.loads((folder / "config.json").read_text())
        config |= {
            "model_type": "evilmodel",
            "architectures": ["EvilModel"],
            "auto_map": {"AutoConfig": "configuration_evil.EvilConfig"},
        }
        (folder / "config.json").write_text(json.dumps(config))
        (folder / "configuration_evil.py").write_text(
            MARK.format(path=str(marker))
            + "from transformers import LlamaConfig\n"
            + "class EvilConfig(LlamaConfig):\n    model_type = 'evilmodel'\n"
        )
    else:
        settings = json.loads((folder / "tokenizer_config.json").read_text())
        settings |= {
            "tokenizer_class": "EvilTokenizer",
            "auto_map": {"AutoTokenizer": [None, "tokenization_evil.EvilTokenizer"]},
        }
        (folder / "tokenizer_config.json").write_text(json.dumps(settings))
        (folder / "tokenization_evil.py").write_text(
            MARK.format(path=str(marker))
            + "from transformers import PreTrainedTokenizerFast\n"
            + "class EvilTokenizer(PreTrainedTokenizerFast):\n    pass\n"
        )


@pytest.mark.parametrize("file", ["config.json", "tokenizer_config.json"])
def test_a_folders_own_code_is_refused_and_never_runs(tmp_path, file):
    folder = save_tiny_model("llama", tmp_path / "model")
    marker = tmp_path / "ran"
    _with_custom_code(folder, marker, file)
    out = subprocess.run(
        [sys.executable, "-m", "app.launcher", "info", "--model", str(folder)],
        input="y\ny\ny\n",  # what a user, or a pipe, would answer to transformers' question
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "HF_HOME": str(tmp_path / "hf")},
    )
    assert out.returncode == 2, out.stderr
    assert f"its {file} asks to run Python code shipped in the folder" in out.stderr
    assert not marker.exists()
    assert not (tmp_path / "hf" / "modules").exists()  # not even copied out of the folder
