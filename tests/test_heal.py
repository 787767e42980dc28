"""Heal (core/passes/heal.py, its training in core/jobs/heal.py): after
structured pruning, a short distillation from the original on the
calibration split. On tiny models of several families: the distillation
loss against the original falls, the original stays bit-identical, sizes
stay the pruned ones (measured and estimated), budgets are kept, the steps
taken are recorded and a rebuild (and Export) replays them to identical
weights. Refusals in one line."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from core.distill.loss import kd_kl
from core.errors import Cancelled, ProvenanceError, UnsupportedModelError
from core.jobs.experiment import ExperimentSettings, build_compressed
from core.jobs.heal import HealWindows, weights_digest
from core.models.loading import load_model
from core.models.size import measure_size
from core.passes import REGISTRY as R
from core.passes import PassContext
from core.passes.recipe import Recipe, RecipeError, apply_recipe, pass_from_dict, validate
from core.passes.size_estimate import estimate_size
from core.progress import CancelToken
from tests.tiny_models import tiny_config, tiny_tokenizer

# pydoc's calibration split is small: every heal reads it whole.
SETTINGS = ExperimentSettings(calibration_windows=4, calibration_length=64, text_source="pydoc")
FAMILIES = ("llama", "qwen2", "gpt2", "mistral")
CONTEXT = 64


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def originals(tmp_path_factory):
    """Tiny models with a 64-token context (so heal trains on 64-token
    windows: fast) and weights scaled up 5x: at the usual 0.02 init every
    output is near uniform, so pruning would leave nothing to heal."""
    from transformers import AutoModelForCausalLM

    root = tmp_path_factory.mktemp("heal")
    built = {}

    def original(family):
        if family not in built:
            config = tiny_config(family)
            for name in ("max_position_embeddings", "n_positions"):
                if hasattr(config, name):
                    setattr(config, name, CONTEXT)
            torch.manual_seed(0)
            model = AutoModelForCausalLM.from_config(config)
            with torch.no_grad():
                for p in model.parameters():
                    if p.dim() >= 2:
                        p.mul_(5)
            model.save_pretrained(root / family)
            tiny_tokenizer().save_pretrained(root / family)
            built[family] = load_model(str(root / family), device="cpu")
        return built[family]

    return original


def heal(**options):
    return R["heal"](**({"seconds": 0.0, "max_steps": 24, "lr": 1e-3} | options))


def state(model) -> dict:
    return {k: v.clone() for k, v in model.state_dict().items()}


@torch.no_grad()
def calibration_kl(original, model) -> float:
    """The heal's loss (T^2 KL at T=2 to the original), over calibration windows."""
    ids = HealWindows(original.tokenizer, "pydoc", CONTEXT, 0).windows[:16]
    return kd_kl(model(input_ids=ids).logits, original.model(input_ids=ids).logits, 2.0).item()


@pytest.mark.parametrize(
    "family,prune",
    [(f, "prune_mlp") for f in FAMILIES] + [("llama", "prune_heads"), ("gpt2", "prune_heads")],
)
def test_heal_lowers_the_loss_and_keeps_original_and_size(originals, family, prune):
    original = originals(family)
    before = state(original.model)
    pruning = R[prune](0.5)
    pruned = build_compressed(original, Recipe((pruning,)), SETTINGS)
    recipe = Recipe((pruning, heal()))
    healed = build_compressed(original, recipe, SETTINGS)

    assert calibration_kl(original, healed.loaded.model) < 0.95 * calibration_kl(
        original, pruned.loaded.model
    )
    after = original.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # the teacher is never written
    size = measure_size(healed.loaded.model)
    assert size == measure_size(pruned.loaded.model)
    assert estimate_size(original.model, recipe).total_bytes == size.total_bytes
    applied = healed.recipe.passes[-1]
    assert (applied.steps_done, applied.planned_steps) == (24, 24)
    assert all(p.grad is None for p in healed.loaded.model.parameters())  # no state kept


def test_step_budget_progress_per_step_and_replay(originals):
    original = originals("llama")
    stages = []
    recipe = Recipe((R["prune_mlp"](0.5), heal(max_steps=3)))
    built = apply_recipe(
        original, recipe, _calibration(original), stages.append, heal=_healer(original)
    )
    steps = [p for p in stages if p.stage.startswith("Healing: step")]
    assert [p.stage.split(",")[0] for p in steps] == [f"Healing: step {k} of 3" for k in (1, 2, 3)]
    assert all("distillation loss" in p.stage for p in steps) and steps[-1].fraction == 1.0
    assert (
        built.artifact["heal"]["steps_done"] == 3 and built.artifact["heal"]["stopped"] == "steps"
    )

    again = apply_recipe(original, built.recipe, _calibration(original), heal=_healer(original))
    assert again.artifact["heal"]["stopped"] == "replayed"
    assert weights_digest(again.loaded.model) == weights_digest(built.loaded.model)


def test_time_budget_plans_stops_and_rebuilds_identically(originals, monkeypatch):
    """A fake clock: each step takes 1 s, then 3 s from the 6th on, so the
    plan made after the warm-up (10 steps in 10 s) is cut short by time."""
    import core.jobs.heal as heal_job

    original = originals("qwen2")
    calls = []

    def clock():  # called at the start and at the end of each step
        step, ended = divmod(len(calls), 2)
        calls.append(step)
        return sum(1.0 if k < 5 else 3.0 for k in range(step + ended))

    monkeypatch.setattr(heal_job, "_clock", clock)
    recipe = Recipe((R["prune_heads"](0.5), heal(seconds=10.0, max_steps=50)))
    timed = build_compressed(original, recipe, SETTINGS)
    done = timed.recipe.passes[-1]
    assert done.planned_steps == 10  # 2 warm-up steps of 1 s, then 8 more fit
    assert done.steps_done < done.planned_steps
    assert timed.artifact["heal"]["stopped"] == "time"
    assert timed.artifact["heal"]["train_s"] <= 10.0  # no step started that would end past it
    monkeypatch.undo()  # the real clock: a rebuild ignores it

    rebuilt = build_compressed(original, timed.recipe, SETTINGS)
    assert rebuilt.recipe == timed.recipe
    assert weights_digest(rebuilt.loaded.model) == timed.artifact["heal"]["weights_sha256"]
    fresh = build_compressed(original, Recipe((R["prune_heads"](0.5), heal(max_steps=2))), SETTINGS)
    assert weights_digest(fresh.loaded.model) != weights_digest(rebuilt.loaded.model)


def test_run_records_the_steps_and_export_rebuilds_exactly(originals, tmp_path):
    from core.jobs.export import ExportRequest, export
    from core.jobs.run import RunRequest, run
    from core.results.store import RunRecord
    from tests.test_app_compression import TINY_SETTINGS
    from tests.test_compiled_runner import TINY_BENCH

    settings = replace(TINY_SETTINGS, bench=TINY_BENCH)
    original = originals("gpt2")
    recipe = Recipe((R["prune_mlp"](0.5), heal(max_steps=4)))
    record = next(
        e
        for e in run(RunRequest(original, recipe, settings=settings, threads=1))
        if isinstance(e, RunRecord)
    )
    assert record.recipe["passes"][-1]["steps_done"] == 4
    assert record.artifact["recipe"] == record.recipe
    assert len(record.artifact["heal"]["weights_sha256"]) == 64
    assert any(n.startswith("heal: 4 steps") for n in record.notes)

    out = tmp_path / "export"
    list(export(ExportRequest(original, out, ("hf",), record=record, settings=settings)))
    back = load_model(str(out), device="cpu")  # export checked the rebuild's sha256 first
    assert record.recipe["passes"][-1]["threads"] == 1
    torch.set_num_threads(2)  # a rebuild trains on the recorded count, whatever is set
    rebuilt = build_compressed(original, Recipe.from_dict(record.recipe), settings)
    assert torch.get_num_threads() == 2
    assert weights_digest(rebuilt.loaded.model) == record.artifact["heal"]["weights_sha256"]
    ids = HealWindows(original.tokenizer, "pydoc", CONTEXT, 0).windows[:2]
    with torch.no_grad():
        assert torch.equal(
            back.model(input_ids=ids).logits, rebuilt.loaded.model(input_ids=ids).logits
        )
    assert Recipe.from_json((out / "recipe.json").read_text()).to_dict() == record.recipe

    tampered = replace(
        record,
        recipe=Recipe(
            (R["prune_mlp"](0.5), heal(max_steps=4, steps_done=3, planned_steps=4, threads=1))
        ).to_dict(),
    )
    with pytest.raises(ProvenanceError, match="gave other weights"):
        list(
            export(
                ExportRequest(original, tmp_path / "t", ("hf",), record=tampered, settings=settings)
            )
        )
    assert not (tmp_path / "t").exists()


def test_cancel_discards_the_build(originals):
    original = originals("llama")
    token = CancelToken()

    def progress(p):
        if p.stage.startswith("Healing: step 2"):
            token.cancel()

    before = state(original.model)
    with pytest.raises(Cancelled):
        build_compressed(original, Recipe((R["prune_mlp"](0.5), heal())), SETTINGS, progress, token)
    after = original.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


@pytest.mark.parametrize(
    "passes,message",
    [
        (("heal",), "heal follows structured pruning"),
        (("prune_unstructured", "prune_mlp", "heal"), "fill its zeros back in"),
        (("prune_heads", "cast", "heal"), "put the quantization last"),
        (("prune_mlp", "int8_weight_only", "heal"), "put the quantization last"),
        (("prune_mlp", "heal", "heal"), "appears twice"),
    ],
)
def test_recipes_that_cannot_heal_are_refused(passes, message):
    recipe = Recipe(tuple(R[name]() for name in passes))
    with pytest.raises(RecipeError, match=message):
        apply_recipe(None, recipe)


def test_refusals_in_one_line(originals, tiny_classifier_dir):
    original = originals("mistral")
    pruned = apply_recipe(original, Recipe((R["prune_mlp"](0.5),)), _calibration(original))
    with pytest.raises(ValueError, match="needs the original model to distil from") as bare:
        heal().apply(pruned.loaded.model, PassContext())
    assert "\n" not in str(bare.value)
    with pytest.raises(UnsupportedModelError, match="trains float32 weights"):
        heal().apply(pruned.loaded.model.to(torch.bfloat16), PassContext(heal=_healer(original)))

    classifier = load_model(str(tiny_classifier_dir), device="cpu")
    with pytest.raises(UnsupportedModelError, match="classifiers are not healed") as refused:
        build_compressed(classifier, Recipe((R["prune_mlp"](0.5), heal())))
    assert "\n" not in str(refused.value)


def test_recipe_json_round_trip_with_version_and_recorded_steps():
    config = heal(seconds=60.0, max_steps=40, seed=3, steps_done=7, planned_steps=9, threads=2)
    data = config.to_dict()
    assert data["pass"] == "heal" and data["version"] == 1
    assert (data["steps_done"], data["planned_steps"], data["threads"]) == (7, 9, 2)
    assert pass_from_dict(data) == config
    recipe = Recipe((R["prune_mlp"](0.25), config))
    assert Recipe.from_json(recipe.to_json()) == recipe
    with pytest.raises(RecipeError, match="version 2 is not supported"):
        pass_from_dict(data | {"version": 2})
    for bad, message in (
        ({"steps_done": 3}, "recorded together"),
        ({"steps_done": 3, "planned_steps": 3}, "recorded together"),
        ({"steps_done": 10, "planned_steps": 9, "threads": 1}, "is over heal.planned_steps"),
        ({"steps_done": 5, "planned_steps": 50, "threads": 1}, "is over heal.max_steps"),
    ):
        config = pass_from_dict(data | {"steps_done": 0, "planned_steps": 0, "threads": 0} | bad)
        with pytest.raises(RecipeError, match=message):  # refused before any work
            validate(Recipe((R["prune_mlp"](0.25), config)))
    with pytest.raises(RecipeError, match="between"):
        pass_from_dict(data | {"seconds": -1})
    recorded = {s.name for s in R["heal"].options() if s.recorded}
    assert recorded == {"steps_done", "planned_steps", "threads"}


def test_panel_offers_heal_without_the_recorded_steps(qtbot):
    from app.compression_panel import CompressionPanel

    panel = CompressionPanel()
    qtbot.addWidget(panel)
    group = panel.groups["heal"]
    assert set(group.controls) == {"seconds", "max_steps", "lr", "seed"}
    group.setChecked(True)
    assert "heal follows structured pruning" in panel.problem.text()
    panel.groups["prune_mlp"].setChecked(True)
    assert panel.problem.text() == ""
    assert [p.name for p in panel.recipe().passes] == ["prune_mlp", "heal"]
    panel.set_recipe(Recipe((R["prune_mlp"](0.25), heal(steps_done=5, planned_steps=5, threads=1))))
    assert panel.recipe().passes[-1].steps_done == 0  # a new run has its own budget


def _calibration(original):
    from core.passes.calibration import calibration_windows

    return calibration_windows(original.tokenizer, 4, 64, "pydoc")


def _healer(original):
    from core.jobs.heal import healer_for

    return healer_for(original, "pydoc")


def test_cli_refuses_heal_alone_in_one_line_before_loading(tmp_path):
    from tests.test_cli import run_cli

    out = run_cli("compress", "-m", str(tmp_path / "never-loaded"), "--pass", "heal")
    assert out.returncode == 2 and "heal follows structured pruning" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


def test_heal_trains_on_the_calibration_split_only(originals):
    from core.passes.calibration import calibration_windows

    tokenizer = originals("llama").tokenizer
    data = HealWindows(tokenizer, "pydoc", CONTEXT, seed=0)
    every = calibration_windows(tokenizer, 1_000_000, CONTEXT, "pydoc")
    assert torch.equal(data.windows, torch.stack(every))  # the split's windows, in order
    batches = torch.cat([data.batch(k) for k in range(len(every) // data.batch_size)])
    assert sorted(batches[:, 1].tolist()) != batches[:, 1].tolist()  # seeded order
    # One epoch: no window twice, all but the remainder of a batch visited.
    assert len(batches.unique(dim=0)) == len(batches) > len(every) - data.batch_size
    assert all((data.windows == row).all(dim=1).any() for row in batches)
    assert torch.equal(HealWindows(tokenizer, "pydoc", CONTEXT, seed=0).batch(3), data.batch(3))


def test_a_heal_names_its_recorded_steps_only_once_it_took_them():
    """Before a run the name said "steps_done=0, planned_steps=0, threads=0"
    as if the heal had trained and taken no step (sweep ten)."""
    asked = R["heal"](seconds=60.0)
    assert "steps_done" not in asked.summary() and "seconds=60.0" in asked.summary()
    applied = R["heal"](seconds=60.0, steps_done=12, planned_steps=20, threads=2)
    assert "steps_done=12" in applied.summary() and "threads=2" in applied.summary()
