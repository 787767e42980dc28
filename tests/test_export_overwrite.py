"""No data loss: overwrite replaces only a folder the workbench exported (it
carries the marker and nothing was added); the user's folders, files, links
and tampered markers are refused in one line with nothing touched, before
any model work; so is a target whose parent cannot be written."""

import hashlib
import json
import os
import subprocess
import sys
import tempfile

import pytest

from core.atomic_folder import ExportTargetError, atomic_folder
from core.export.marker import MARKER_NAME
from core.jobs.write_export import ExportResult, run_export
from core.models.loading import load_model
from core.passes.recipe import Recipe


@pytest.fixture
def loaded(tiny_gpt2_dir):
    return load_model(str(tiny_gpt2_dir), device="cpu")


def forbid_model_work(monkeypatch):
    """From now on, building the configuration fails the test: any refusal
    must come before it."""

    def forbidden(*args, **kwargs):
        raise AssertionError("model work started before the target was checked")

    monkeypatch.setattr("core.jobs.experiment.build_compressed", forbidden)


@pytest.fixture
def no_model_work(monkeypatch):
    forbid_model_work(monkeypatch)


def export(loaded, target, overwrite=False, run_id=None, progress=None):
    kwargs = {"progress": progress} if progress else {}
    events = list(
        run_export(
            loaded,
            Recipe(),
            target,
            ("report",),
            chosen_run_id=run_id,
            overwrite=overwrite,
            **kwargs,
        )
    )
    return events[-1]


def tree(folder):
    """Every entry under ``folder`` (links not followed) with its bytes or link text."""
    found = {}
    for root, dirs, files in os.walk(folder):
        for name in dirs + files:
            path = os.path.join(root, name)
            rel = os.path.relpath(path, folder)
            if os.path.islink(path):
                found[rel] = "link -> " + os.readlink(path)
            elif os.path.isfile(path):
                found[rel] = hashlib.sha256(open(path, "rb").read()).hexdigest()
            else:
                found[rel] = "folder"
    return found


def user_folder(path):
    path.mkdir()
    (path / "thesis.txt").write_text("four years of work")
    (path / "data").mkdir()
    (path / "data" / "results.csv").write_bytes(b"a,b\n1,2\n")
    return path


def refused(call, match):
    with pytest.raises(ExportTargetError, match=match) as info:
        call()
    assert "\n" not in str(info.value)  # one line
    return str(info.value)


@pytest.mark.parametrize("overwrite", [True, False])
def test_user_folder_is_refused_and_left_intact(loaded, tmp_path, no_model_work, overwrite):
    """Without overwrite too: that refusal advised overwriting, which then
    refused (sweep nine)."""
    target = user_folder(tmp_path / "mine")
    before = tree(tmp_path)
    said = refused(
        lambda: export(loaded, target, overwrite=overwrite), "not made by a workbench export"
    )
    assert "overwrite" not in said
    assert tree(tmp_path) == before  # byte for byte, and no temporary folder left


@pytest.mark.parametrize("points_to", ["user folder", "earlier export"])
def test_symlink_target_is_refused_link_and_destination_intact(loaded, tmp_path, points_to):
    if points_to == "user folder":
        destination = user_folder(tmp_path / "mine")
    else:
        destination = tmp_path / "earlier"
        export(loaded, destination)
    link = tmp_path / "link"
    link.symlink_to(destination, target_is_directory=True)
    before = tree(tmp_path)
    for overwrite in (False, True):
        refused(lambda o=overwrite: export(loaded, link, overwrite=o), "symbolic link")
    assert link.is_symlink() and os.readlink(link) == str(destination)
    assert tree(tmp_path) == before


def test_earlier_export_is_replaced(loaded, tmp_path):
    target = tmp_path / "out"
    export(loaded, target, run_id="first")
    first = json.loads((target / MARKER_NAME).read_text())
    assert first["run_id"] == "first" and first["formats"] == ["report"]
    assert first["files"] == ["recipe.json", "report.html", "report.json"]

    result = export(loaded, target, overwrite=True, run_id="second")
    assert isinstance(result, ExportResult) and MARKER_NAME in result.files
    second = json.loads((target / MARKER_NAME).read_text())
    assert second["run_id"] == "second" and second["export_id"] != first["export_id"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # old folder and temp gone


def test_empty_folder_is_replaced_only_with_overwrite(loaded, tmp_path):
    target = tmp_path / "made-for-it"
    target.mkdir()
    refused(lambda: export(loaded, target), "already exists")
    export(loaded, target, overwrite=True)
    assert (target / MARKER_NAME).is_file() and (target / "report.html").is_file()


def _replace_with_folder(marker):
    marker.unlink()
    marker.mkdir()


def _replace_with_link(marker):
    real = marker.parent.parent / "elsewhere.json"
    real.write_bytes(marker.read_bytes())  # a valid marker, reached through a link
    marker.unlink()
    marker.symlink_to(real)


def _edit(change):
    def tamper(marker):
        data = json.loads(marker.read_text())
        marker.write_text(json.dumps(change(data)))

    return tamper


TAMPERS = {
    "folder": (_replace_with_folder, "not a regular file"),
    "link": (_replace_with_link, "not a regular file"),
    "not json": (lambda m: m.write_text("{not json"), "not a valid workbench export marker"),
    "array": (lambda m: m.write_text("[1, 2]"), "not a valid workbench export marker"),
    "nested": (lambda m: m.write_text("[" * 100_000), "not a valid workbench export marker"),
    "other tool": (_edit(lambda d: {**d, "format": "x"}), "not a valid workbench export marker"),
    "no id": (_edit(lambda d: {**d, "export_id": ""}), "not a valid workbench export marker"),
    "files not a list": (_edit(lambda d: {**d, "files": "*"}), "not a valid"),
    "user file added": (lambda m: (m.parent / "notes.txt").write_text("mine"), "notes.txt"),
    "user folder added": (lambda m: user_folder(m.parent / "mine"), "mine/data/results.csv"),
}


@pytest.mark.parametrize("tamper", list(TAMPERS))
def test_tampered_export_is_refused_and_left_intact(loaded, tmp_path, tamper, monkeypatch):
    target = tmp_path / "out"
    export(loaded, target)
    change, match = TAMPERS[tamper]
    change(target / MARKER_NAME)
    before = tree(tmp_path)
    forbid_model_work(monkeypatch)
    refused(lambda: export(loaded, target, overwrite=True), match)
    assert tree(tmp_path) == before


@pytest.mark.parametrize("overwrite", [True, False])
def test_file_target_is_refused(loaded, tmp_path, no_model_work, overwrite):
    target = tmp_path / "notes.txt"
    target.write_text("mine")
    said = refused(lambda: export(loaded, target, overwrite=overwrite), "is a file, not a folder")
    assert "overwrite" not in said and "remove it" not in said
    assert target.read_text() == "mine"


def test_parent_that_cannot_be_written_is_refused(loaded, tmp_path, no_model_work, monkeypatch):
    afile = tmp_path / "afile"
    afile.write_text("x")
    refused(lambda: export(loaded, afile / "out"), "afile is not a folder")
    refused(lambda: export(loaded, tmp_path / "missing" / "out"), "missing does not exist")
    # As root os.access grants everything, so the refusal is shown with it patched.
    real_access = os.access
    locked = tmp_path / "locked"
    locked.mkdir()
    monkeypatch.setattr(os, "access", lambda p, mode: p != locked and real_access(p, mode))
    refused(lambda: export(loaded, locked / "out"), "locked is not writable")
    assert afile.read_text() == "x" and list(locked.iterdir()) == []


def test_temporary_folder_that_cannot_be_made_is_one_line(tmp_path, monkeypatch):
    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tempfile, "mkdtemp", denied)
    with pytest.raises(ExportTargetError, match="cannot write into .*: Permission denied"):
        with atomic_folder(tmp_path / "out"):
            raise AssertionError("never entered")
    assert list(tmp_path.iterdir()) == []


def test_folder_changed_during_export_is_not_replaced(loaded, tmp_path):
    target = tmp_path / "out"
    export(loaded, target)
    before = tree(target)

    def user_writes_meanwhile(event):
        if event.stage == "Moving the export into place":
            (target / "notes.txt").write_text("written while exporting")

    refused(lambda: export(loaded, target, overwrite=True, progress=user_writes_meanwhile), "notes")
    assert tree(target) == {**before, "notes.txt": tree(target)["notes.txt"]}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no temporary folder left


def run_cli(*args, data_dir):
    env = {**os.environ, "WORKBENCH_DATA_DIR": str(data_dir)}
    return subprocess.run(
        [sys.executable, "-m", "app.launcher", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


def test_cli_refuses_in_one_line_with_exit_2(tiny_gpt2_dir, tmp_path):
    recipe = tmp_path / "recipe.json"
    recipe.write_text(Recipe().to_json())
    mine = user_folder(tmp_path / "mine")
    afile = tmp_path / "afile"
    afile.write_text("x")
    before = tree(mine)
    cases = {mine: "not made by a workbench export", afile / "out": "afile is not a folder"}
    for out, reason in cases.items():
        done = run_cli(
            "export",
            *("--model", str(tiny_gpt2_dir), "--recipe", str(recipe), "--out", str(out)),
            "--overwrite",
            data_dir=tmp_path / "data",
        )
        assert done.returncode == 2, done.stderr
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
        assert reason in lines[0] and "Traceback" not in done.stderr and done.stdout == ""
    assert tree(mine) == before and afile.read_text() == "x"


def test_dialog_says_what_it_replaces_and_refuses_a_user_folder(qtbot, tmp_path):
    from app.export_dialog import ExportDialog

    dialog = ExportDialog("mine", ["report"], tmp_path)
    qtbot.addWidget(dialog)
    assert "only a folder the workbench exported" in dialog.overwrite.toolTip().lower()
    target = user_folder(tmp_path / "mine")
    before = tree(tmp_path)
    dialog.overwrite.setChecked(True)
    dialog.accept()
    assert dialog.result() != dialog.DialogCode.Accepted
    assert "not made by a workbench export" in dialog.problem.text()
    assert tree(tmp_path) == before and target.is_dir()

    dialog.target.setText(str(tmp_path / "new"))  # a new folder is accepted
    dialog.accept()
    assert dialog.result() == dialog.DialogCode.Accepted


@pytest.mark.parametrize(
    ("typed", "words"),
    [
        ("", "Give the folder"),
        ("   ", "Give the folder"),
        ("relative-export", "full path"),
        ("exports/new", "full path"),
        ("{tmp}/bad\nname", "line break"),
    ],
)
def test_dialog_refuses_a_typed_folder_that_would_land_elsewhere(qtbot, tmp_path, typed, words):
    """A relative folder landed in the workbench's working directory (the
    repository under ./run.sh); a newline made a folder no listing shows well."""
    from app.export_dialog import ExportDialog

    dialog = ExportDialog("mine", ["report"], tmp_path)
    qtbot.addWidget(dialog)
    before = tree(tmp_path)
    dialog.target.setText(typed.format(tmp=tmp_path))
    dialog.accept()
    assert dialog.result() != dialog.DialogCode.Accepted
    assert words in dialog.problem.text()
    assert tree(tmp_path) == before
