"""The distillation checkpoint folder never takes the user's files: a folder
holding anything a checkpoint run does not write, the source model's folder
(or one inside it), a file or a link is refused in one line before any
training (exit 2 from the CLI); a folder an earlier run wrote is reused, and
a save deletes only the step folders it wrote."""

from __future__ import annotations

import pytest
import torch

from core.atomic_folder import ExportTargetError
from core.distill import checkpoint as ckpt
from tests.test_cli import run_cli


def _state(step: int) -> ckpt.SavedState:
    return ckpt.SavedState(step, 1.0, [1.0], {}, {}, "t")


def _save(folder, step: int) -> None:
    model = torch.nn.Linear(2, 2)
    ckpt.save_checkpoint(folder, model, torch.optim.AdamW(model.parameters()), _state(step))


def test_new_empty_and_earlier_checkpoint_folders_are_accepted(tmp_path):
    ckpt.check_checkpoint_dir(tmp_path / "new")
    (tmp_path / "empty").mkdir()
    ckpt.check_checkpoint_dir(tmp_path / "empty")
    _save(tmp_path / "earlier", 1)
    ckpt.check_checkpoint_dir(tmp_path / "earlier")


@pytest.mark.parametrize("kind", ["notes folder", "file beside", "step-like folder", "file"])
def test_a_folder_with_the_users_files_is_refused(tmp_path, kind):
    folder = tmp_path / "ck"
    if kind == "file":
        folder.write_text("mine")
    else:
        folder.mkdir()
        if kind == "notes folder":
            (folder / "step-by-step-notes").mkdir()
            (folder / "step-by-step-notes" / "notes.txt").write_text("mine")
        elif kind == "file beside":
            _save(folder, 1)
            (folder / "notes.txt").write_text("mine")
        else:  # named like a step, holding a file of the user's
            (folder / "step-00000001").mkdir()
            (folder / "step-00000001" / "thesis.tex").write_text("mine")
    with pytest.raises(ExportTargetError) as err:
        ckpt.check_checkpoint_dir(folder)
    assert "\n" not in str(err.value)


def test_the_source_model_folder_and_folders_inside_it_are_refused(tmp_path):
    source = tmp_path / "model"
    source.mkdir()
    for folder in (source, source / "checkpoints", tmp_path):
        with pytest.raises(ExportTargetError, match="source model"):
            ckpt.check_checkpoint_dir(folder, protected=source)


def test_a_save_removes_only_its_own_step_folders(tmp_path):
    _save(tmp_path, 1)
    (tmp_path / "step-00000007").mkdir()  # not ours: holds the user's file
    (tmp_path / "step-00000007" / "thesis.tex").write_text("mine")
    _save(tmp_path, 2)
    assert (tmp_path / "step-00000007" / "thesis.tex").read_text() == "mine"
    assert not (tmp_path / "step-00000001").exists()


def test_the_cli_refuses_before_training_and_leaves_the_folder_alone(tiny_llama_dir, tmp_path):
    folder = tmp_path / "mine"
    (folder / "step-by-step-notes").mkdir(parents=True)
    (folder / "step-by-step-notes" / "notes.txt").write_text("mine")
    args = ["--drop-layers", "1", "--no-save", "--no-eval", "--steps", "2", "--seq-len", "16"]
    for target in (folder, tiny_llama_dir):
        out = run_cli("distill", "-m", str(tiny_llama_dir), *args, "--checkpoint-dir", str(target))
        assert out.returncode == 2, out.stderr
        assert "Traceback" not in out.stderr and "KD at" not in out.stdout  # no training
    assert (folder / "step-by-step-notes" / "notes.txt").read_text() == "mine"
    assert not [p for p in tiny_llama_dir.iterdir() if p.name == "LATEST" or "step-" in p.name]


def test_a_second_run_on_a_folder_in_use_is_refused_at_once(tiny_llama_dir, tmp_path):
    # two runs sharing a folder deleted each other's newest step (sweep 13)
    folder = tmp_path / "ck"
    args = ["--drop-layers", "1", "--no-save", "--no-eval", "--steps", "2", "--seq-len", "16"]
    with ckpt.writing_checkpoints(folder):
        out = run_cli("distill", "-m", str(tiny_llama_dir), *args, "--checkpoint-dir", str(folder))
    assert out.returncode == 2, out.stderr
    assert "another distillation is writing checkpoints" in out.stderr.splitlines()[-1]
    assert "KD at" not in out.stdout and not folder.exists()  # refused before any work


def test_a_latest_naming_a_missing_step_falls_back_to_the_newest_complete_one(tmp_path):
    _save(tmp_path, 10)
    (tmp_path / ckpt.LATEST).write_text("step-00000020")  # deleted by a run sharing the folder
    assert ckpt.latest_checkpoint(tmp_path) == tmp_path / "step-00000010"
    _save(tmp_path, 30)  # and the next save puts things right
    assert ckpt.latest_checkpoint(tmp_path) == tmp_path / "step-00000030"
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / ckpt.LATEST).write_text("step-00000020")
    assert ckpt.latest_checkpoint(empty) is None  # nothing complete: a fresh start


def test_a_save_cut_short_by_a_kill_is_removed_by_the_next_save(tmp_path):
    _save(tmp_path, 1)
    killed = tmp_path / ".step-00000002.wbfn1zwj"  # a kill mid-save left it
    killed.mkdir()
    (killed / ckpt.WEIGHTS).write_bytes(b"half")
    mine = tmp_path / ".step-00000003.notes"  # hidden, named alike, the user's
    mine.mkdir()
    (mine / "thesis.tex").write_text("mine")
    _save(tmp_path, 4)
    assert not killed.exists() and (mine / "thesis.tex").read_text() == "mine"
