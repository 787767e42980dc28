"""The pruning probes of the sensitivity map: 25% of one layer's MLP neurons
removed (prune_mlp's importance) and the layer dropped (prune_layers'
removal). Each cell scores as the plain way does (the whole model changed
on that one layer, a full forward), a layer whose output is zero costs
nothing to drop or prune, the original stays bit-identical, maps resume
from the store by probe, the CLI prints them, and a family the probe cannot
change is refused in one line."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from torch import nn

from core.errors import Cancelled, UnsupportedModelError
from core.jobs.experiment import ExperimentSettings, read_calibration
from core.jobs.layer_probe import _logits, record_original
from core.jobs.sensitivity import (
    SensitivityCell,
    SensitivityMap,
    SensitivityRequest,
    SensitivityResumed,
    sensitivity,
)
from core.jobs.sensitivity_probes import DropLayerProbe, PruneMlpProbe, probe_from_dict
from core.models.loading import load_model
from core.passes.base import PassContext
from core.passes.blocks import decoder_layers, mlp_parts, prepare_for_structured_pruning
from core.passes.prune_layers import drop_layers
from core.passes.prune_mlp import measure_neuron_importance, remove_neurons
from core.passes.scope import part_of
from core.progress import CancelToken, ignore_progress
from core.results.sensitivity_store import SensitivityStore
from tests.tiny_models import save_tiny_model

SETTINGS = ExperimentSettings(calibration_windows=2, calibration_length=32)
FAMILIES = ("llama", "qwen2", "gpt2")


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("probe-families")
    return {f: load_model(str(save_tiny_model(f, root / f)), device="cpu") for f in FAMILIES}


def _map(loaded, probe, store=None, cancel=None, parts=()):
    request = SensitivityRequest(loaded, probe, parts, 1, SETTINGS, store)
    return list(sensitivity(request, cancel=cancel))


def _plain(loaded, probe, layer):
    """The plain way: a whole deep copy, the pass's own code on that layer,
    a full forward; the original's reference from a full forward too."""
    from core.evaluate.perplexity import PerplexityProtocol, perplexity_windows
    from core.jobs.sensitivity import TOP_K, _context_tokens

    context = _context_tokens(loaded)
    protocol = PerplexityProtocol(context, context // 2, split="dev", quick_windows=1)
    windows = perplexity_windows(loaded.tokenizer, protocol)[:1]
    record = record_original(loaded.model, windows, TOP_K)
    whole = copy.deepcopy(loaded.model)
    if isinstance(probe, DropLayerProbe):
        drop_layers(whole, decoder_layers(whole), {layer})
    else:
        prepare_for_structured_pruning(whole)
        calibration = read_calibration(loaded, SETTINGS, ignore_progress)
        layers = decoder_layers(whole)
        scores = measure_neuron_importance(whole, layers, calibration, PassContext(calibration))
        width = mlp_parts(layers[layer])[1].in_features
        remove_neurons(whole, layers[layer], scores[layer], width - round(0.25 * width))
    with torch.inference_mode():
        return record.references[0].score(_logits(whole.eval(), windows[0]), windows[0])


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("probe", [PruneMlpProbe(), DropLayerProbe()], ids=["mlp", "drop"])
def test_each_cell_scores_as_the_plain_way_and_the_original_is_untouched(models, family, probe):
    loaded = models[family]
    before = {k: v.clone() for k, v in loaded.model.state_dict().items()}
    layers = loaded.model.config.num_hidden_layers
    result = _map(loaded, probe)[-1]
    assert isinstance(result, SensitivityMap)
    assert [(c.layer, c.part) for c in result.cells] == [
        (i, probe.columns[0]) for i in range(layers)
    ]
    assert all(c.mean_kl > 0 for c in result.cells)  # every layer of a random model matters
    for cell in result.cells:
        plain = _plain(loaded, probe, cell.layer)
        assert cell.mean_kl == pytest.approx(plain.kl, rel=1e-3, abs=1e-7)
    after = loaded.model.state_dict()  # the user's model: same tensors, same values, same shape
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    assert loaded.model.config.num_hidden_layers == layers
    assert len(decoder_layers(loaded.model)) == layers


def _silence(layer: nn.Module) -> None:
    """Zero the layer's output projections (o and down): it adds nothing to
    the residual stream, so the model computes exactly the same without it."""
    for name, module in layer.named_modules():
        if part_of(name) in ("o", "down"):
            with torch.no_grad():
                module.weight.zero_()
                if module.bias is not None:
                    module.bias.zero_()


@pytest.mark.parametrize("family", FAMILIES)
def test_a_silent_layer_costs_nothing_and_a_working_one_does(tmp_path, family):
    loaded = load_model(str(save_tiny_model(family, tmp_path / family)), device="cpu")
    _silence(decoder_layers(loaded.model)[0])
    for probe in (DropLayerProbe(), PruneMlpProbe()):
        silent, working = _map(loaded, probe)[-1].cells
        assert abs(silent.mean_kl) < 1e-8 and silent.ppl_ratio == pytest.approx(1.0, abs=1e-6)
        assert working.mean_kl > 1e-6 and working.mean_kl > 1000 * abs(silent.mean_kl)


def test_maps_resume_by_probe_and_fresh_measures_again(models, tmp_path):
    loaded = models["llama"]
    store = SensitivityStore(tmp_path / "sensitivity.jsonl")
    cancel = CancelToken()
    seen = []
    with pytest.raises(Cancelled):  # cancelled after the first cell: it is kept
        for event in sensitivity(
            SensitivityRequest(loaded, DropLayerProbe(), (), 1, SETTINGS, store), cancel=cancel
        ):
            seen.append(event)
            cancel.cancel()
    assert [type(e) for e in seen] == [SensitivityCell]
    resumed = _map(loaded, DropLayerProbe(), store)
    assert isinstance(resumed[0], SensitivityResumed) and len(resumed[0].cells) == 1
    new = [e for e in resumed if isinstance(e, SensitivityCell)]
    assert [c.layer for c in new] == [1]  # only the missing layer was measured
    assert resumed[-1].resumed == 1 and resumed[-1].cells[0].mean_kl == seen[0].mean_kl
    again = _map(loaded, DropLayerProbe(), store)
    assert not any(isinstance(e, SensitivityCell) for e in again)  # all read back
    other = _map(loaded, PruneMlpProbe(), store)  # another probe: its own cells
    assert sum(isinstance(e, SensitivityCell) for e in other) == 2
    half = _map(loaded, PruneMlpProbe(0.5), store)  # another fraction: its own cells too
    assert sum(isinstance(e, SensitivityCell) for e in half) == 2
    assert all(
        a.mean_kl < b.mean_kl for a, b in zip(other[-1].cells, half[-1].cells, strict=True)
    )  # half the neurons cost more than a quarter


def test_a_layout_the_probe_does_not_know_is_refused_in_one_line(tmp_path):
    loaded = load_model(str(save_tiny_model("llama", tmp_path / "llama")), device="cpu")

    class UnknownMlp(nn.Module):
        def __init__(self, width):
            super().__init__()
            self.w_in, self.w_out = nn.Linear(width, 128), nn.Linear(128, width)

        def forward(self, x):
            return self.w_out(torch.relu(self.w_in(x)))

    for layer in decoder_layers(loaded.model):
        layer.mlp = UnknownMlp(64)
    with pytest.raises(UnsupportedModelError, match="MLP layout") as refused:
        next(sensitivity(SensitivityRequest(loaded, PruneMlpProbe(), (), 1, SETTINGS)))
    assert "\n" not in str(refused.value)
    # Dropping a layer needs no MLP layout: that map still runs.
    assert len(_map(loaded, DropLayerProbe())[-1].cells) == 2
    with pytest.raises(ValueError, match="parts do not apply"):
        next(sensitivity(SensitivityRequest(loaded, DropLayerProbe(), ("attention",), 1)))


def test_probes_from_pass_dicts():
    assert probe_from_dict({"pass": "prune_mlp", "version": 1, "fraction": 0.5}) == PruneMlpProbe(
        0.5
    )
    assert probe_from_dict({"pass": "prune_layers", "version": 1}) == DropLayerProbe()
    with pytest.raises(ValueError, match="count does not apply"):
        probe_from_dict({"pass": "prune_layers", "version": 1, "count": 1})
    with pytest.raises(ValueError, match="cannot be limited"):
        probe_from_dict({"pass": "prune_heads", "version": 1})


def test_the_cli_prints_pruning_maps_as_json(tiny_gpt2_dir, capsys):
    from core.cli.main import main

    argv = ["sensitivity", "--model", str(tiny_gpt2_dir), "--device", "cpu", "--windows", "1"]
    assert main([*argv, "--probe", "drop_layer", "--json", "--fresh"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [(c["layer"], c["part"]) for c in data["cells"]] == [(0, ""), (1, "")]
    assert data["probe"]["pass"] == "prune_layers" and all(c["mean_kl"] > 0 for c in data["cells"])
    assert main([*argv, "--probe", "prune_mlp:fraction=0.25", "--json", "--fresh"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [(c["layer"], c["part"]) for c in data["cells"]] == [(0, "mlp"), (1, "mlp")]
    assert main([*argv, "--probe", "prune_mlp", "--json"]) == 0  # resumed: same cells
    out = capsys.readouterr()
    assert json.loads(out.out)["cells"] == data["cells"] and "2 of 2 cells read back" in out.err
    for bad in (
        ["--probe", "drop_layer", "--parts", "attention"],
        ["--probe", "drop_layer:count=1"],
    ):
        assert main([*argv, *bad]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error:") and err.count("\n") == 1
