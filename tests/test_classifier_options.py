"""A language model's protocol options given for a classifier are refused in
one line, before work: they were silently ignored, and `eval --split dev`
printed the test split's accuracy (sweep nine)."""

from __future__ import annotations

import pytest

from tests.test_cli import run_cli


@pytest.mark.parametrize(
    ("command", "options", "named"),
    [
        ("eval", ["--split", "dev"], "--split"),
        ("eval", ["--windows", "5", "--text", "pydoc"], "--text, --windows"),
        ("bench", ["--prompt-tokens", "16", "--new-tokens", "8"], "--prompt-tokens, --new-tokens"),
        ("search", ["--eval-windows", "2"], "--eval-windows"),
    ],
)
def test_a_classifier_refuses_a_language_models_options(
    tiny_classifier_dir, command, options, named
):
    out = run_cli(command, "-m", str(tiny_classifier_dir), *options)
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert lines[-1].startswith(f"error: {named}: a language model's protocol; a classifier")
    assert "Traceback" not in out.stderr


def test_a_language_model_still_takes_them(tiny_llama_dir):
    out = run_cli(
        "eval", "-m", str(tiny_llama_dir), "--split", "dev", "--text", "pydoc",
        "--context-tokens", "64", "--windows", "2",
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "dev split of Python help" in out.stdout
