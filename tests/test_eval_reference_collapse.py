"""`eval --reference` flags a model that has collapsed against its reference
(top-1 agreement < 0.5 or perplexity > 3x on the same tokens), as a run of
the same numbers is flagged; a sweep saw 18.7% agreement printed plain."""

from __future__ import annotations

import json

import torch

from core.cli.main import main
from tests.tiny_models import save_tiny_model


def _eval(model, reference, capsys, *extra):
    code = main(
        ["eval", "-m", str(model), "--reference", str(reference), "--device", "cpu",
         "--windows", "1", "--context-tokens", "64", *extra]
    )  # fmt: skip
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return captured.out


def test_another_models_predictions_are_flagged_as_collapsed(tmp_path, capsys):
    from transformers import AutoModelForCausalLM

    reference = save_tiny_model("llama", tmp_path / "reference")
    other = save_tiny_model("llama", tmp_path / "other", seed=7)  # same shapes, other weights
    model = AutoModelForCausalLM.from_pretrained(other)
    with torch.no_grad():  # sharp, confident and wrong: random weights alone are near uniform
        model.model.norm.weight.mul_(30)
    model.save_pretrained(other)
    out = _eval(other, reference, capsys)
    assert "BROKEN: collapsed: perplexity" in out and "x the reference's > 3x" in out
    assert "depart that far" in out
    report = json.loads(_eval(other, reference, capsys, "--json"))
    assert report["problem"].startswith("collapsed:")
    assert report["fidelity"]["ppl_ratio"] > 3


def test_the_model_against_itself_is_not_flagged(tmp_path, capsys):
    reference = save_tiny_model("llama", tmp_path / "reference")
    copy = save_tiny_model("llama", tmp_path / "copy")  # the same weights in another folder
    out = _eval(copy, reference, capsys)
    assert "BROKEN" not in out and "top-1 agreement 100.0%" in out
