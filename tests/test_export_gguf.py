"""GGUF export: tiny Llama, Mistral and Qwen2 models written as GGUF load in
transformers' GGUF reader (which undoes llama.cpp's converter, q/k row order
included) with the configuration's logits and tokenizer; int8/int4 values are
kept on the Q8_0/Q4_1 grids; every tensor is read back and checked against
its type's error bound, and a file that fails the check is not kept; other
families are refused in one line before any work. The default model's Q8_0
export is compared with the GGUF llama.cpp itself made (real_model)."""

import json

import gguf
import numpy as np
import pytest
import torch

from core.errors import ExportFailedError
from core.export import gguf_format
from core.export.gguf_check import f16_rounding
from core.export.gguf_encode import TYPES
from core.jobs.write_export import ExportResult, run_export
from core.models.loading import load_model
from core.passes import REGISTRY as R
from core.passes.recipe import Recipe, apply_recipe
from tests.test_passes import calibration_for
from tests.tiny_models import save_tiny_model, tiny_tokenizer

TEXT = "The module defines a class; the function returns 42 values."
CHAT = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
)


@pytest.fixture(scope="module")
def family_dirs(tmp_path_factory):
    return {
        kind: save_tiny_model(kind, tmp_path_factory.mktemp(f"tiny-{kind}"))
        for kind in ("llama", "mistral", "qwen2")
    }


def export_gguf(loaded, recipe, out, gguf_type, formats=("gguf",)):
    compressed = apply_recipe(loaded, recipe, calibration_for(loaded))
    events = list(
        run_export(loaded, recipe, out, formats, compressed=compressed, gguf_type=gguf_type)
    )
    assert isinstance(events[-1], ExportResult)
    return compressed.loaded, events[-1], out / events[-1].details["gguf"]["file"]


def read_back(path):
    """The GGUF as transformers' llama.cpp-compatible reader builds it."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, name = path.parent, path.name
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    return model.eval(), AutoTokenizer.from_pretrained(folder, gguf_file=name)


@torch.no_grad()
def logit_diff(a, b, ids):
    return (a(input_ids=ids).logits.float() - b(input_ids=ids).logits.float()).abs().max().item()


# Measured on these models: F16 within 3e-4 of fp32, Q8_0 within 8e-3.
@pytest.mark.parametrize("kind", ["llama", "mistral", "qwen2"])
@pytest.mark.parametrize("gguf_type, tolerance", [("f16", 2e-3), ("q8_0", 3e-2)])
def test_family_reads_back_with_the_configurations_logits(
    family_dirs, kind, gguf_type, tolerance, tmp_path
):
    loaded = load_model(str(family_dirs[kind]), device="cpu")
    config, result, path = export_gguf(loaded, Recipe(), tmp_path / "out", gguf_type)
    model, tokenizer = read_back(path)
    ids = loaded.tokenizer(TEXT, return_tensors="pt").input_ids
    assert tokenizer(TEXT).input_ids == ids[0].tolist()
    if kind == "mistral":  # sliding window 8: llama.cpp attends to everything, said in a note
        ids = ids[:, :8]
        assert "sliding-window" in result.summaries["gguf"]
    assert logit_diff(config.model, model, ids) < tolerance
    details = result.details["gguf"]
    assert details["architecture"] == ("qwen2" if kind == "qwen2" else "llama")
    assert {t["type"] for t in details["tensors"]} == {"F32", gguf_type.upper()}


@pytest.fixture(scope="module")
def llama(family_dirs):
    return load_model(str(family_dirs["llama"]), device="cpu")


def _tensor(path, name):
    tensor = next(t for t in gguf.GGUFReader(path).tensors if t.name == name)
    return gguf.dequantize(tensor.data, tensor.tensor_type), tensor.tensor_type


def test_int8_weights_keep_their_values_in_q8_0(llama, tmp_path):
    config, result, path = export_gguf(
        llama, Recipe((R["int8_weight_only"](),)), tmp_path / "o", "q8_0"
    )
    checks = {t["hf_name"]: t for t in result.details["gguf"]["tensors"]}
    down = checks["model.layers.1.mlp.down_proj.weight"]
    assert down["how"] == "kept" and down["type"] == "Q8_0"
    linear = config.model.model.layers[1].mlp.down_proj
    values, _ = _tensor(path, "blk.1.ffn_down.weight")
    scales = linear.scales.float()[:, None].numpy()
    # The same int8 values; only the per-row scale moved from bf16 to F16.
    assert np.array_equal(np.round(values / scales), linear.weight_int8.numpy())
    error = np.abs(values - linear.dequantized_weight().numpy())
    assert (error <= 127 * f16_rounding(scales)).all()
    assert down["max_abs_error"] == pytest.approx(error.max())


def test_int4_groups_keep_their_values_in_q4_1(llama, tmp_path):
    recipe = Recipe((R["int4_weight_only"](64, "rtn"),))
    _, result, _ = export_gguf(llama, recipe, tmp_path / "o", "q4_1")
    kept = [t for t in result.details["gguf"]["tensors"] if t["how"] == "kept"]
    assert len(kept) == 2 * 7  # every block linear of both layers
    # Rounding again would move weights by up to half a step; kept values move
    # only by the F16 rounding of their group's scale and minimum.
    assert max(t["max_over_half_step"] for t in kept) < 0.05


def test_int8_head_tied_or_not(llama, tmp_path):
    """A tied int8 head and embedding are one Q8_0 token_embd (llama.cpp reads
    it for both); a head quantised alone is its own output.weight."""
    for targets, has_output in (("head+embeddings", False), ("head", True)):
        recipe = Recipe((R["int8_head"](targets),))
        config, result, path = export_gguf(llama, recipe, tmp_path / targets, "q8_0")
        checks = {t["name"]: t for t in result.details["gguf"]["tensors"]}
        assert ("output.weight" in checks) == has_output
        kept = checks["output.weight" if has_output else "token_embd.weight"]
        assert kept["how"] == "kept"
        ids = llama.tokenizer(TEXT, return_tensors="pt").input_ids
        assert logit_diff(config.model, read_back(path)[0], ids) < 3e-2


def test_rounded_blocks_lie_on_the_grid(llama, tmp_path):
    for gguf_type in ("q8_0", "q4_1"):
        _, result, _ = export_gguf(llama, Recipe(), tmp_path / gguf_type, gguf_type)
        rounded = [t for t in result.details["gguf"]["tensors"] if t["how"] == "rounded"]
        assert rounded and all(t["within_bound"] for t in rounded)
        # Half a step, plus what the block scale's F16 rounding adds (<= 127 / 1024 steps).
        assert max(t["max_over_half_step"] for t in rounded) <= 1 + 127 / 1024
        types = {t["name"]: t["type"] for t in result.details["gguf"]["tensors"]}
        assert types["token_embd.weight"] == "Q8_0"  # 8 bits beside 4-bit blocks
        assert types["blk.0.ffn_up.weight"] == gguf_type.upper()


def test_pruned_and_low_rank_configurations_read_back(llama, tmp_path):
    recipe = Recipe((R["prune_layers"](1), R["prune_heads"](0.5), R["prune_mlp"](0.25)))
    config, result, path = export_gguf(llama, recipe, tmp_path / "pruned", "f16")
    model, _ = read_back(path)
    ids = llama.tokenizer(TEXT, return_tensors="pt").input_ids
    assert logit_diff(config.model, model, ids) < 2e-3
    assert model.config.num_hidden_layers == 1 and model.config.intermediate_size == 96

    config, result, path = export_gguf(llama, Recipe((R["low_rank"](0.5),)), tmp_path / "lr", "f16")
    assert logit_diff(config.model, read_back(path)[0], ids) < 2e-3
    assert "multiplied back" in result.summaries["gguf"]

    # 115 neurons: ffn_down's rows are not whole Q8_0 blocks, so it falls back to F16.
    recipe = Recipe((R["prune_mlp"](0.1),))
    config, result, path = export_gguf(llama, recipe, tmp_path / "odd", "q8_0")
    types = {t["name"]: t["type"] for t in result.details["gguf"]["tensors"]}
    assert types["blk.0.ffn_down.weight"] == "F16" and types["blk.0.ffn_up.weight"] == "Q8_0"
    assert "2 matrices stored as F16" in result.summaries["gguf"]
    assert logit_diff(config.model, read_back(path)[0], ids) < 3e-2


def test_tokenizer_and_chat_template_metadata(tmp_path):
    folder = save_tiny_model("llama", tmp_path / "chat")
    tokenizer = tiny_tokenizer()
    tokenizer.chat_template = CHAT
    tokenizer.save_pretrained(folder)
    loaded = load_model(str(folder), device="cpu")
    _, result, path = export_gguf(loaded, Recipe(), tmp_path / "out", "q8_0")
    fields = gguf.GGUFReader(path).fields
    assert fields["tokenizer.chat_template"].contents() == CHAT
    assert fields["tokenizer.ggml.model"].contents() == "gpt2"
    assert fields["tokenizer.ggml.pre"].contents() == "gpt-2"
    vocab = loaded.tokenizer.get_vocab()
    tokens = fields["tokenizer.ggml.tokens"].contents()
    assert all(tokens[i] == token for token, i in vocab.items())
    assert fields["tokenizer.ggml.eos_token_id"].contents() == loaded.tokenizer.eos_token_id
    assert len(fields["tokenizer.ggml.merges"].data) > 0
    assert result.details["gguf"]["tokenizer"]["chat_template"]


def test_a_file_that_fails_the_check_is_not_kept(llama, tmp_path, monkeypatch):
    real = gguf_format.encode

    def off_by_a_little(name, weight, qtype):
        if name == "blk.0.attn_v.weight":
            weight = type(weight)(weight.dense * 1.01, weight.stored)
        return real(name, weight, qtype)

    monkeypatch.setattr(gguf_format, "encode", off_by_a_little)
    with pytest.raises(ExportFailedError, match="blk.0.attn_v.weight"):
        export_gguf(llama, Recipe(), tmp_path / "out", "q8_0")
    assert list(tmp_path.iterdir()) == []


def test_other_families_are_refused_before_any_work(tiny_gpt2_dir, tmp_path, capsys):
    from core.cli.main import main

    recipe = tmp_path / "recipe.json"
    recipe.write_text(Recipe().to_json())
    out = tmp_path / "out"
    argv = ["export", "--model", str(tiny_gpt2_dir), "--recipe", str(recipe), "--out", str(out)]
    code = main([*argv, "--format", "gguf"])
    err = capsys.readouterr().err
    assert code == 2 and "GGUF export supports llama, mistral, qwen2" in err
    assert len([line for line in err.splitlines() if "error" in line]) == 1
    assert not out.exists()
    assert main([*argv, "--format", "gguf", "--gguf-type", "q2_k"]) == 2
    assert "invalid choice: 'q2_k'" in capsys.readouterr().err


def test_cli_offers_every_type_the_writer_knows():
    from core.cli.main import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    action = next(a for a in sub.choices["export"]._actions if a.dest == "gguf_type")
    assert set(action.choices) == set(TYPES)
    # None until given (given without gguf in --format it is refused); q8_0 then
    assert action.default is None and "(default: q8_0)" in action.help


def test_report_says_which_type_each_tensor_got(llama, tmp_path):
    recipe = Recipe((R["int8_weight_only"](),))
    _, result, _ = export_gguf(llama, recipe, tmp_path / "o", "q8_0", ("gguf", "report"))
    report = json.loads((tmp_path / "o" / "report.json").read_text())
    rows = {r["tensor"]: r for r in report["exported"]["gguf"]["tensor_types"]}
    assert rows["blk.*.attn_q.weight"] == {
        "tensor": "blk.*.attn_q.weight",
        "type": "Q8_0",
        "how": "kept",
        "count": 2,
        "blocks": [0, 1],
    }
    assert rows["token_embd.weight"]["how"] == "rounded"
    html = (tmp_path / "o" / "report.html").read_text()
    assert "GGUF tensor types" in html and "blk.*.ffn_down.weight" in html
    assert "--gguf-type q8_0" in report["reproduce"]["commands"][1]
    assert (tmp_path / "o" / "gguf" / "Modelfile").read_text() == "FROM ./model-Q8_0.gguf\n"


def test_export_dialog_offers_gguf_with_a_type(qtbot, tmp_path):
    from app.export_dialog import ExportDialog

    dialog = ExportDialog("int8_weight_only", ["hf", "report", "gguf"], tmp_path)
    qtbot.addWidget(dialog)
    assert not dialog.formats["gguf"].isChecked() and not dialog.gguf_types.isEnabled()
    dialog.formats["gguf"].setChecked(True)
    assert dialog.gguf_types.isEnabled() and dialog.gguf_type() == "q8_0"
    dialog.gguf_types.setCurrentIndex(dialog.gguf_types.findData("q4_1"))
    assert dialog.gguf_type() == "q4_1" and "gguf" in dialog.chosen()[1]


def test_window_exports_a_run_as_gguf_of_the_chosen_type(qtbot, window, tmp_path):
    from tests.test_app_compression import run

    run(qtbot, window)
    record = window.results_table.records[0]
    target = tmp_path / "exported"
    with qtbot.waitSignal(window.runner.finished, timeout=120_000):
        window.export_run(record, target, ["gguf"], gguf_type="q4_1")
    assert (target / "gguf" / "model-Q4_1.gguf").is_file()
    assert not window.runner.busy


@pytest.mark.real_model
def test_default_model_q8_0_matches_its_weights_and_llama_cpps_layout(tmp_path):
    """Names, q/k row order and the Q8_0 grid against the GGUF llama.cpp's own
    converter made of this model (the weights the workbench loads)."""
    from core.models.default_model import gguf_path
    from core.onnx.fidelity import check_windows

    original = load_model("default", device="cpu")
    config, result, path = export_gguf(original, Recipe(), tmp_path / "out", "q8_0")
    details = result.details["gguf"]
    assert all(t["within_bound"] for t in details["tensors"])
    assert details["tokenizer"]["source"].startswith("copied from")
    ours = {t.name: t for t in gguf.GGUFReader(path).tensors}
    theirs = {t.name: t for t in gguf.GGUFReader(gguf_path()).tensors}
    assert set(ours) == set(theirs)
    # llama.cpp's embedding was Q8_0 already: rounding it again changes no byte.
    assert np.array_equal(ours["token_embd.weight"].data, theirs["token_embd.weight"].data)
    for name in ("blk.3.attn_q.weight", "blk.3.attn_k.weight"):  # rows in llama.cpp's order
        a = gguf.dequantize(ours[name].data, ours[name].tensor_type)
        b = gguf.dequantize(theirs[name].data, theirs[name].tensor_type)
        assert np.abs(a - b.reshape(a.shape)).max() < np.abs(b).max() / 100

    model, tokenizer = read_back(path)
    window = check_windows(original.tokenizer, original.model.config)[0][None]
    with torch.no_grad():
        a, b = config.model(input_ids=window).logits[0], model(input_ids=window).logits[0]
    assert (a.argmax(-1) == b.argmax(-1)).float().mean() > 0.95
    chat = [{"role": "user", "content": "What is the capital of France?"}]
    ids = tokenizer.apply_chat_template(chat, add_generation_prompt=True, return_tensors="pt")
    ids = ids["input_ids"] if not torch.is_tensor(ids) else ids
    with torch.no_grad():
        text = model.generate(ids, max_new_tokens=16, do_sample=False)[0, ids.shape[1] :]
    assert "Paris" in tokenizer.decode(text, skip_special_tokens=True)


@pytest.mark.real_model
def test_default_model_q4_1_is_llama_cpps_own_file(tmp_path):
    """The default model's weights are llama.cpp's Q4_1 linears and Q8_0
    embedding: written as Q4_1 (embedding 8-bit) again, every tensor is
    byte-identical to the GGUF llama.cpp's converter made (names, q/k row
    order, nibble order, scales, minimums)."""
    from core.models.default_model import gguf_path

    original = load_model("default", device="cpu")
    _, _, path = export_gguf(original, Recipe(), tmp_path / "out", "q4_1")
    ours = {t.name: t for t in gguf.GGUFReader(path).tensors}
    theirs = {t.name: t for t in gguf.GGUFReader(gguf_path()).tensors}
    linears = [n for n, t in theirs.items() if t.tensor_type.name == "Q4_1"]
    assert len(linears) == 30 * 7
    assert set(ours) == set(theirs)
    for name, tensor in theirs.items():
        assert ours[name].tensor_type == tensor.tensor_type, name
        assert np.array_equal(ours[name].data, tensor.data), name
