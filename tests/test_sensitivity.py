"""The Sensitivity job: one cell per layer (and part), each the probe pass
applied to that layer alone and scored on the dev split; coarser probes cost
more; a cancel keeps the cells measured."""

import pytest

from core.errors import Cancelled
from core.jobs.sensitivity import (
    SensitivityCell,
    SensitivityMap,
    SensitivityRequest,
    sensitivity,
)
from core.models.loading import load_model
from core.passes import REGISTRY as R
from core.progress import CancelToken


@pytest.fixture(scope="module")
def original(tiny_llama_dir):
    return load_model(str(tiny_llama_dir), device="cpu")


def _map(original, probe, parts=()):
    events = list(sensitivity(SensitivityRequest(original, probe, parts, windows=2)))
    assert isinstance(events[-1], SensitivityMap)
    return events[-1]


def test_a_cell_per_layer_and_int4_costs_more_than_int8(original):
    int4 = _map(original, R["int4_weight_only"](32, "rtn"))
    int8 = _map(original, R["int8_weight_only"]())
    layers = original.model.config.num_hidden_layers
    assert [c.layer for c in int4.cells] == list(range(layers))
    assert all(c.mean_kl > 0 and c.ppl_ratio > 0 for c in int4.cells)
    assert all(a.mean_kl > b.mean_kl for a, b in zip(int4.cells, int8.cells, strict=True))
    assert "dev-split" in int4.protocol and int4.probe["pass"] == "int4_weight_only"
    assert "tokens of news articles" in int4.protocol  # the text, not only its split
    worst = max(int4.cells, key=lambda c: c.mean_kl).layer
    assert int4.most_sensitive_layers(1) == [worst]


def test_parts_make_a_layers_by_parts_grid(original):
    grid = _map(original, R["int4_weight_only"](32, "rtn"), parts=("q", "down"))
    layers = original.model.config.num_hidden_layers
    assert [(c.layer, c.part) for c in grid.cells] == [
        (layer, part) for layer in range(layers) for part in ("q", "down")
    ]
    assert grid.cells[-1].done == grid.cells[-1].total == 2 * layers


def test_cancel_keeps_what_was_measured(original):
    cancel, seen = CancelToken(), []
    request = SensitivityRequest(original, R["int8_weight_only"](), windows=1)
    with pytest.raises(Cancelled):
        for event in sensitivity(request, cancel=cancel):
            seen.append(event)
            cancel.cancel()
    assert len(seen) == 1 and isinstance(seen[0], SensitivityCell)


def test_an_unscoped_probe_or_a_classifier_is_refused(original, tiny_classifier_dir):
    with pytest.raises(ValueError, match="cannot be limited"):
        list(sensitivity(SensitivityRequest(original, R["prune_layers"](1))))
    classifier = load_model(str(tiny_classifier_dir), device="cpu")
    with pytest.raises(ValueError, match="causal LM"):
        list(sensitivity(SensitivityRequest(classifier, R["int8_weight_only"]())))


def test_the_cli_prints_the_map_as_json(tiny_llama_dir, capsys):
    import json

    from core.cli.main import main

    argv = ["sensitivity", "--model", str(tiny_llama_dir), "--device", "cpu", "--windows", "1"]
    assert main([*argv, "--probe", "int8_weight_only", "--parts", "q,up", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert {(c["layer"], c["part"]) for c in data["cells"]} == {
        (layer, part) for layer in range(2) for part in ("q", "up")
    }
    assert main([*argv, "--probe", "prune_heads"]) == 2  # not scoped: refused
    assert "cannot be limited" in capsys.readouterr().err
    assert main([*argv, "--parts", "q,nose"]) == 2
    err = capsys.readouterr().err
    assert "nose" in err and err.count("\n") == 1
    # a probe that changes nothing measured a map of zeros (sweep nine)
    for probe in ("prune_mlp:fraction=0", "prune_unstructured:sparsity=0"):
        assert main([*argv, "--probe", probe]) == 2
        err = capsys.readouterr().err
        assert "changes nothing" in err and err.count("\n") == 1
