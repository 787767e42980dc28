"""Distillation on tiny models: the loss falls, the teacher is untouched,
cancel + resume is the uninterrupted run, checkpoints are atomic, and the
CLI runs end to end."""

import dataclasses
import json

import pytest
import torch

from core.distill import checkpoint as ckpt
from core.distill.events import (
    DistillCheckpoint,
    DistillEval,
    DistillResult,
    DistillResumed,
    DistillStep,
)
from core.distill.settings import DistillSettings
from core.distill.student import StudentShape, build_student, teacher_layer_of
from core.distill.train import distill
from core.errors import Cancelled, OutOfMemoryError
from core.models.loading import load_model
from core.passes.calibration import calibration_windows
from core.progress import CancelToken
from tests.test_cli import run_cli

SETTINGS = DistillSettings(
    steps=40,
    learning_rate=2e-3,
    warmup_steps=3,
    batch_size=4,
    seq_len=64,
    temperature=1.0,
    text_source="pydoc",
    max_train_tokens=60_000,
    eval_every=None,
    checkpoint_every=0,
)


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny matrices gain nothing from a second thread, and on a busy machine
    torch's spinning threads made these tests ten times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def sharp_teacher(folder):
    """The tiny model with its final norm scaled up: random weights give
    near-uniform next-token distributions, which leave KD little to learn."""
    teacher = load_model(str(folder))
    norm = teacher.model.model.norm if hasattr(teacher.model, "model") else None
    norm = norm if norm is not None else teacher.model.transformer.ln_f
    with torch.no_grad():
        norm.weight.mul_(8)
    return teacher


def make_student(teacher, shape=None):
    shape = shape or StudentShape(drop_layers=1)
    calibration = calibration_windows(teacher.tokenizer, 4, 64, "pydoc")
    return build_student(teacher, shape.recipe(), calibration)


def run(events):
    return [e for e in events]


def state_of(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("kind", ["llama", "gpt2"])
def test_loss_falls_and_the_teacher_is_untouched(kind, tiny_llama_dir, tiny_gpt2_dir):
    torch.manual_seed(0)
    teacher = sharp_teacher({"llama": tiny_llama_dir, "gpt2": tiny_gpt2_dir}[kind])
    before = state_of(teacher.model)
    student = make_student(teacher)
    events = run(distill(teacher, student, SETTINGS))
    losses = [e.loss for e in events if isinstance(e, DistillStep)]
    assert len(losses) == 40
    early, late = sum(losses[:8]) / 8, sum(losses[-8:]) / 8
    assert late < 0.7 * early, (early, late)
    result = events[-1]
    assert isinstance(result, DistillResult) and result.step == 40 and result.stopped == "steps"
    after = teacher.model.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert len(teacher.model.model.layers if kind == "llama" else teacher.model.transformer.h) == 2


def test_cancel_then_resume_is_the_uninterrupted_run(tiny_llama_dir, tmp_path):
    teacher = sharp_teacher(tiny_llama_dir)
    settings = DistillSettings(**(SETTINGS.to_dict() | {"steps": 10}))
    whole = make_student(teacher)
    run(distill(teacher, whole, settings, checkpoint_dir=tmp_path / "whole"))

    cancel = CancelToken()
    seen = []
    with pytest.raises(Cancelled):
        for event in distill(
            teacher, make_student(teacher), settings, cancel=cancel, checkpoint_dir=tmp_path / "cut"
        ):
            seen.append(event)
            if isinstance(event, DistillStep) and event.step == 4:
                cancel.cancel()
    assert isinstance(seen[-1], DistillCheckpoint) and seen[-1].step == 4
    assert max(e.step for e in seen if isinstance(e, DistillStep)) == 4

    resumed = make_student(teacher)
    events = run(distill(teacher, resumed, settings, checkpoint_dir=tmp_path / "cut"))
    assert isinstance(events[0], DistillResumed) and events[0].step == 4
    assert [e.step for e in events if isinstance(e, DistillStep)] == list(range(5, 11))
    assert events[-1].step == 10 and events[-1].steps_this_run == 6

    # Same weights, same AdamW moments and step counts as the run never cut.
    for name, value in whole.loaded.model.state_dict().items():
        assert torch.allclose(value, resumed.loaded.model.state_dict()[name], atol=1e-6), name
    a = torch.load(ckpt.latest_checkpoint(tmp_path / "whole") / ckpt.OPTIMIZER)
    b = torch.load(ckpt.latest_checkpoint(tmp_path / "cut") / ckpt.OPTIMIZER)
    assert a["state"].keys() == b["state"].keys()
    for key, state in a["state"].items():
        assert float(state["step"]) == float(b["state"][key]["step"]) == 10
        for moment in ("exp_avg", "exp_avg_sq"):
            assert torch.allclose(state[moment], b["state"][key][moment], atol=1e-7, rtol=1e-4)
    saved_a = json.loads((ckpt.latest_checkpoint(tmp_path / "whole") / ckpt.STATE).read_text())
    saved_b = json.loads((ckpt.latest_checkpoint(tmp_path / "cut") / ckpt.STATE).read_text())
    assert saved_b["step"] == 10
    assert saved_b["losses"] == pytest.approx(saved_a["losses"], rel=1e-4)


def test_resume_refuses_other_settings(tiny_llama_dir, tmp_path):
    teacher = sharp_teacher(tiny_llama_dir)
    settings = DistillSettings(**(SETTINGS.to_dict() | {"steps": 2}))
    run(distill(teacher, make_student(teacher), settings, checkpoint_dir=tmp_path))
    hotter = DistillSettings(**(settings.to_dict() | {"temperature": 4.0, "steps": 3}))
    with pytest.raises(ValueError, match="temperature"):
        run(distill(teacher, make_student(teacher), hotter, checkpoint_dir=tmp_path))


def test_a_failed_checkpoint_write_leaves_the_previous_one(tiny_llama_dir, tmp_path, monkeypatch):
    teacher = sharp_teacher(tiny_llama_dir)
    student = make_student(teacher)
    settings = DistillSettings(**(SETTINGS.to_dict() | {"steps": 2, "checkpoint_every": 1}))
    run(distill(teacher, student, settings, checkpoint_dir=tmp_path))
    good = ckpt.latest_checkpoint(tmp_path)
    assert good.name == "step-00000002"

    def broken_save(obj, path, *args, **kwargs):
        with open(path, "wb") as f:
            f.write(b"half a file")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ckpt.torch, "save", broken_save)
    optimizer = torch.optim.AdamW(student.loaded.model.parameters())
    state = ckpt.SavedState(3, 1.0, [1.0, 1.0, 1.0], settings.to_dict(), {}, "t")
    with pytest.raises(OSError, match="No space"):
        ckpt.save_checkpoint(tmp_path, student.loaded.model, optimizer, state)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["LATEST", "step-00000002"]
    assert ckpt.latest_checkpoint(tmp_path) == good
    monkeypatch.undo()
    saved = ckpt.load_checkpoint(good, make_student(teacher).loaded.model, optimizer)
    assert saved.step == 2


def test_time_budget_and_extra_losses(tiny_gpt2_dir):
    teacher = sharp_teacher(tiny_gpt2_dir)
    student = make_student(teacher, StudentShape(mlp_remove=0.5))
    assert teacher_layer_of(student.loaded.model, teacher.model) == [0, 1]
    settings = DistillSettings(
        **(
            SETTINGS.to_dict()
            | {"steps": None, "time_budget_s": 0.5, "alpha_lm": 0.5, "beta_hidden": 1.0}
            | {"eval_every": 0, "eval_context_tokens": 128}
        )
    )
    events = run(distill(teacher, student, settings))
    step = next(e for e in events if isinstance(e, DistillStep))
    assert step.lm_loss > 0 and step.hidden_loss > 0
    assert step.loss == pytest.approx(step.kd_loss + 0.5 * step.lm_loss + step.hidden_loss)
    result = events[-1]
    assert result.stopped == "time" and result.train_s >= 0.5
    assert isinstance(events[-2], DistillEval) and result.ppl == events[-2].ppl > 1


def test_dropped_layers_map_back_to_the_teacher(tiny_gpt2_dir):
    teacher = load_model(str(tiny_gpt2_dir))
    student = make_student(teacher)
    dropped = int(student.notes[0].split("[")[1].rstrip("]"))
    assert teacher_layer_of(student.loaded.model, teacher.model) == [1 - dropped]


@pytest.mark.parametrize("kind", ["bloom", "opt"])  # no "attn" in BLOOM's names; OPT's MLP
def test_a_family_structured_pruning_cannot_narrow_still_drops_and_distills(kind, tmp_path):
    from tests.tiny_models import save_tiny_model

    teacher = load_model(str(save_tiny_model(kind, tmp_path / kind)))
    student = make_student(teacher)
    dropped = int(student.notes[0].split("[")[1].rstrip("]"))
    assert teacher_layer_of(student.loaded.model, teacher.model) == [1 - dropped]
    settings = dataclasses.replace(SETTINGS, steps=3)
    result = run(distill(teacher, student, settings))[-1]
    assert isinstance(result, DistillResult) and result.step == 3


def test_out_of_memory_is_a_clear_error(tiny_llama_dir, monkeypatch):
    import core.distill.train as train

    def no_memory(*args, **kwargs):
        raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(train, "_train_step", no_memory)
    teacher = load_model(str(tiny_llama_dir))
    with pytest.raises(OutOfMemoryError, match="lower the batch size"):
        run(distill(teacher, make_student(teacher), SETTINGS))


def test_cli_distills_the_tiny_model(tiny_llama_dir, tmp_path):
    args = [
        "distill", "-m", str(tiny_llama_dir), "--drop-layers", "1", "--steps", "6",
        "--seq-len", "64", "--text", "pydoc", "--eval-every", "3", "--eval-context", "128",
        "--checkpoint-dir", str(tmp_path), "--threads", "1", "--json",
    ]  # fmt: skip
    out = run_cli(*args)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["result"]["step"] == 6 and report["student_ppl"] > 1
    assert report["teacher_ppl"] > 1 and report["pruned_ppl"] > 1
    # the training monitor's perplexity (result.ppl) and the reported ones name their protocols
    assert "dev split" in report["monitor_protocol"] and "report split" in report["protocol"]
    assert "step 3: perplexity" in out.stderr
    out = run_cli(*args[:6], "8", *args[7:], "--resume")
    assert out.returncode == 0, out.stderr
    assert "resumed" in out.stderr and json.loads(out.stdout)["result"]["steps_this_run"] == 2


@pytest.mark.parametrize("where", ["empty", "missing"])
def test_resume_from_a_folder_without_a_checkpoint_is_refused_before_loading(tmp_path, where):
    """A mistyped --checkpoint-dir trained from step 0 without a word (sweep nine)."""
    folder = tmp_path / where
    if where == "empty":
        folder.mkdir()
    out = run_cli(
        "distill", "-m", str(tmp_path / "never-loaded"), "--drop-layers", "1",
        "--checkpoint-dir", str(folder), "--resume",
    )  # fmt: skip
    assert out.returncode == 2
    assert out.stderr.strip().splitlines()[-1] == (
        f"error: --resume: {folder} holds no checkpoint to resume; "
        "leave --resume out to start from step 0"
    )


def test_cli_refuses_a_student_without_a_shape(tmp_path):
    out = run_cli("distill", "-m", str(tmp_path / "never-loaded"))
    assert out.returncode == 2 and "--drop-layers" in out.stderr


def test_the_default_evaluation_window_fits_a_short_context(tiny_llama_dir):
    """The 512-token default would be refused on a 256-position model; it is
    cut to the model's context, and the run says so."""
    args = [
        "distill", "-m", str(tiny_llama_dir), "--drop-layers", "1", "--steps", "2",
        "--seq-len", "64", "--text", "pydoc", "--eval-every", "0", "--eval-windows", "1",
        "--threads", "1", "--json",
    ]  # fmt: skip
    out = run_cli(*args)
    assert out.returncode == 0, out.stderr
    assert "evaluation windows of 256 tokens, not 512" in out.stderr
    assert json.loads(out.stdout)["student_ppl"] > 1


def test_a_loss_that_stops_being_a_number_stops_training(tiny_llama_dir, tmp_path):
    """A NaN teacher (or a learning rate that overflows) made every later step
    train on NaN, save a NaN checkpoint and print "distilled nan" as a result."""
    from core.errors import TrainingDivergedError
    from tests.tiny_models import save_nan_copy

    teacher = load_model(str(save_nan_copy(tiny_llama_dir, tmp_path / "nan")))
    steps = []
    with pytest.raises(TrainingDivergedError, match="diverged at step 1.*learning rate"):
        for event in distill(teacher, make_student(teacher), SETTINGS, checkpoint_dir=tmp_path):
            steps.append(event)
    assert steps == [] and not list(tmp_path.glob("step-*"))  # nothing trained on NaN was kept


@pytest.mark.parametrize(
    "option, value", [("--temperature", "1e300"), ("--temperature", "1e-300"), ("--lr", "1e30")]
)
def test_settings_past_any_use_are_refused_in_one_line(option, value, tmp_path):
    out = run_cli(
        "distill", "-m", str(tmp_path / "never-loaded"), "--drop-layers", "1", option, value
    )
    assert out.returncode == 2 and option in out.stderr and "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


def test_a_collapsed_student_is_flagged_with_or_without_a_stored_run():
    from types import SimpleNamespace

    from core.cli.distill import _broken
    from core.distill.student import StudentShape

    recipe = StudentShape(drop_layers=1).recipe()
    teacher = SimpleNamespace(description=SimpleNamespace(layers=2))
    stored = SimpleNamespace(broken="collapsed: top-1 agreement 0.40 < 0.5; likely cause: x")
    assert _broken({}, stored, recipe, teacher) == stored.broken
    report = {"teacher_ppl": 100.0, "student_ppl": 400.0}  # --no-save: by perplexity alone
    assert _broken(report, None, recipe, teacher).startswith("collapsed: perplexity 4.0x")
    assert "not a number" in _broken({**report, "student_ppl": float("nan")}, None, recipe, teacher)
    assert _broken({**report, "student_ppl": 120.0}, None, recipe, teacher) == ""
