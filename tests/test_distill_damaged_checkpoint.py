"""A damaged distillation checkpoint is refused in one line naming the file
(a sweep found tracebacks, and torch's unpickler advising weights_only=False
for a pickle with code in it): cut short, not JSON, fields of another
version, an optimizer state that is a pickle of something else."""

from __future__ import annotations

import json
import pickle

import pytest
import torch

from core.distill import checkpoint as ckpt


class Runs:
    def __reduce__(self):
        return (print, ("this must never run",))


def _saved(tmp_path):
    model = torch.nn.Linear(4, 3)
    optimizer = torch.optim.AdamW(model.parameters())
    model(torch.ones(1, 4)).sum().backward()
    optimizer.step()
    state = ckpt.SavedState(3, 1.0, [0.5], {}, {}, "t")
    return ckpt.save_checkpoint(tmp_path / "c", model, optimizer, state), model, optimizer


def _cut(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _extra_field(path):
    path.write_text(json.dumps(json.loads(path.read_text()) | {"later": 1}))


@pytest.mark.parametrize(
    "file, damage",
    [
        (ckpt.STATE, lambda p: p.write_text("{not json")),
        (ckpt.STATE, _extra_field),
        (ckpt.STATE, lambda p: p.write_text("[1, 2]")),
        (ckpt.WEIGHTS, _cut),
        (ckpt.OPTIMIZER, _cut),
        (ckpt.OPTIMIZER, lambda p: p.write_bytes(pickle.dumps(Runs()))),
    ],
    ids=["not-json", "extra-field", "a-list", "weights-cut", "optimizer-cut", "optimizer-pickle"],
)
def test_a_damaged_checkpoint_is_one_line_naming_its_file(tmp_path, capsys, file, damage):
    folder, model, optimizer = _saved(tmp_path)
    assert ckpt.load_checkpoint(folder, model, optimizer).step == 3  # whole, it loads
    damage(folder / file)
    with pytest.raises(ValueError) as caught:
        ckpt.load_checkpoint(folder, model, optimizer)
    message = str(caught.value)
    assert "\n" not in message and str(folder / file) in message
    assert "weights_only=False" not in message
    assert "this must never run" not in capsys.readouterr().out
