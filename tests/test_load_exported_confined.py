"""The exported-folder loader treats the folder as untrusted input: real
exports of a tiny Llama (int8, int4 of low-rank factors, plain low-rank
factors, W8A8) still load with the same logits, and copies with a tampered
manifest or weights file are refused with CorruptModelError naming the
field, and through the CLI with exit 2 and one line; nothing outside the
folder is read, no JSON name is set on a module, no tensor of the wrong
shape or dtype reaches a kernel."""

import json
import math
import os
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from core.cli.main import main
from core.errors import CorruptModelError
from core.export.hf_folder import MANIFEST, OWN_WEIGHTS, write_hf_folder
from core.models.loading import load_model
from core.passes import REGISTRY as R
from core.passes.recipe import Recipe, apply_recipe
from tests.test_passes import calibration_for

RECIPES = {
    "int8": Recipe((R["int8_weight_only"](),)),
    "int4": Recipe((R["low_rank"](0.5), R["int4_weight_only"](32, "rtn"))),
    "low_rank": Recipe((R["low_rank"](0.5),)),
    "w8a8": Recipe((R["int8_dynamic"](0.0),)),
}
IDS = torch.tensor([[3, 17, 101, 250, 7, 42, 300, 9]])
Q = "model.layers.0.self_attn.q_proj"
K = "model.layers.0.self_attn.k_proj"  # a low-rank pair in the int4 and low_rank exports


def logits(model):
    with torch.no_grad():
        return model(input_ids=IDS).logits


@pytest.fixture(scope="module")
def exports(tiny_llama_dir, tmp_path_factory):
    """name -> (folder, the compressed model's logits); written by the hf writer."""
    loaded = load_model(str(tiny_llama_dir), device="cpu")
    out = {}
    for name, recipe in RECIPES.items():
        compressed = apply_recipe(loaded, recipe, calibration_for(loaded))
        folder = tmp_path_factory.mktemp(f"export-{name}")
        write_hf_folder(compressed.loaded.model, loaded.tokenizer, loaded.model.config, folder)
        out[name] = (folder, logits(compressed.loaded.model))
    return out


@pytest.mark.parametrize("name", RECIPES)
def test_a_genuine_export_loads_with_the_same_logits(exports, name):
    folder, reference = exports[name]
    manifest = json.loads((folder / MANIFEST).read_text())
    assert manifest["loader"] == "workbench" and manifest["modules"]
    assert torch.equal(logits(load_model(str(folder), device="cpu").model), reference)


def test_recorded_settings_of_the_frame_are_accepted(exports, tmp_path):
    """The allow-list is the frame's own settings: values the writer could
    record (here the ones the model already has) load as before."""
    folder, reference = exports["int8"]
    copy = tmp_path / "copy"
    shutil.copytree(folder, copy)
    manifest = json.loads((copy / MANIFEST).read_text())
    manifest["attributes"] = {
        "": {"vocab_size": 512},
        "model.layers.0.self_attn": {"head_dim": 16, "scaling": 0.25},
    }
    (copy / MANIFEST).write_text(json.dumps(manifest))
    assert torch.equal(logits(load_model(str(copy), device="cpu").model), reference)


# --- tampering helpers: each edits a copy of an export in place ----------------


def manifest_edit(change):
    def tamper(folder, exports):
        path = folder / MANIFEST
        manifest = json.loads(path.read_text())
        replaced = change(manifest)
        path.write_text(json.dumps(manifest if replaced is None else replaced))

    return tamper


def weights_edit(change):
    def tamper(folder, exports):
        path = folder / OWN_WEIGHTS
        tensors = load_file(str(path))
        change(tensors)
        save_file(tensors, str(path))

    return tamper


def weights_path_to(other):
    """The manifest names another export's weights file by a relative path."""

    def tamper(folder, exports):
        path = os.path.relpath(exports[other][0] / OWN_WEIGHTS, folder)
        manifest_edit(lambda m: m.__setitem__("weights", path))(folder, exports)

    return tamper


def text(content):
    def tamper(folder, exports):
        (folder / MANIFEST).write_text(content)

    return tamper


def set_key(key, value):
    return manifest_edit(lambda m: m.__setitem__(key, value))


def attribute(module, name, value):
    return set_key("attributes", {module: {name: value}})


def module_entry(index, **fields):
    return manifest_edit(lambda m: m["modules"][index].update(fields))


def link_weights_to(target):
    def tamper(folder, exports):
        (folder / OWN_WEIGHTS).unlink()
        (folder / OWN_WEIGHTS).symlink_to(target(exports))

    return tamper


def resize(key, rows=None, dtype=None):
    def change(tensors):
        t = tensors[key]
        tensors[key] = (t[:rows] if rows else t).to(dtype or t.dtype).contiguous()

    return weights_edit(change)


def put(key, tensor):
    return weights_edit(lambda tensors: tensors.__setitem__(key, tensor))


def drop(key):
    return weights_edit(lambda tensors: tensors.pop(key))


def nested(depth):
    return "[" * depth + "]" * depth


# (id, export, tamper, words the one-line refusal must contain)
TAMPERED = [
    # the weights path: only the writer's file name, inside the folder
    ("absolute-path", "int8", set_key("weights", "/etc/passwd"), "weights '/etc/passwd'"),
    ("dotdot-path", "int8", set_key("weights", "../../etc/passwd"), "weights '../../etc/passwd'"),
    ("other-export-file", "int8", weights_path_to("int4"), "weights '../"),
    ("plain-name-for-ours", "int8", set_key("weights", "model.safetensors"), "weights"),
    (
        "symlink-to-other-export",
        "int8",
        link_weights_to(lambda e: e["int4"][0] / OWN_WEIGHTS),
        "links outside the folder",
    ),
    ("symlink-to-etc", "int8", link_weights_to(lambda e: "/etc/passwd"), "links outside"),
    # attribute names come from the frame module's own settings
    ("attr-class", "int8", attribute("model.layers.0.self_attn", "__class__", 1), "'__class__'"),
    ("attr-dict", "int8", attribute("model.layers.0.self_attn", "__dict__", 1), "'__dict__'"),
    ("attr-forward", "int8", attribute("model.layers.0.self_attn", "forward", 1), "'forward'"),
    ("attr-config", "int8", attribute("model.layers.0.self_attn", "config", "x"), "'config'"),
    ("attr-on-dunder", "int8", attribute("__class__", "head_dim", 16), "'__class__'"),
    ("attr-on-missing", "int8", attribute("model.layers.9.self_attn", "head_dim", 16), "layers.9"),
    ("attr-wrong-type", "int8", attribute("model.layers.0.self_attn", "head_dim", "x"), "head_dim"),
    ("attr-list", "int8", attribute("model.layers.0.self_attn", "head_dim", [1]), "head_dim"),
    ("attr-nan", "int8", attribute("model.layers.0.self_attn", "scaling", math.nan), "finite"),
    ("attr-breaks-heads", "int8", attribute("model.layers.0.self_attn", "head_dim", 3), "not run"),
    # module names: real linear layers of the frame, kinds from the allow-list
    ("module-dunder", "int8", module_entry(0, name="__class__"), "'__class__'"),
    ("module-private", "int8", module_entry(0, name="model._modules"), "'model._modules'"),
    ("module-missing", "int8", module_entry(0, name="model.layers.99.x"), "model.layers.99.x"),
    ("module-not-linear", "int8", module_entry(0, name="model.layers.0.mlp"), "not a linear"),
    ("module-kind", "int8", module_entry(0, kind="Pickle"), "kind 'Pickle'"),
    (
        "layernorm-on-linear",
        "int8",
        module_entry(0, kind="LayerNorm", attributes={"width": 64, "eps": 1e-5}),
        "not a LayerNorm",
    ),
    ("module-extra-key", "int8", module_entry(0, path="/etc/passwd"), "modules[0]"),
    ("module-attrs", "int8", module_entry(0, attributes={"forward": 1}), "modules[0]"),
    (
        "module-twice",
        "int8",
        manifest_edit(lambda m: m["modules"].append(m["modules"][0])),
        "listed twice",
    ),
    (
        "int4-group",
        "int4",
        module_entry(
            0,
            attributes={
                **dict.fromkeys(("in_features", "padded_in_features", "out_features"), 64),
                "group_size": 16,
            },
        ),
        "group_size",
    ),
    (
        "int4-in-text",
        "int4",
        module_entry(
            0,
            attributes={
                "in_features": "64",
                "padded_in_features": 64,
                "out_features": 64,
                "group_size": 32,
            },
        ),
        "in_features",
    ),
    (
        "pair-children",
        "int4",
        manifest_edit(
            lambda m: next(e for e in m["modules"] if e["name"] == K)["attributes"].update(
                children=3
            )
        ),
        "2 children",
    ),
    (
        "pair-lacks-factor",
        "int4",
        manifest_edit(
            lambda m: m["modules"].remove(next(e for e in m["modules"] if e["name"] == K + ".1"))
        ),
        "lacks a factor",
    ),
    (
        "pair-third-factor",
        "int4",
        manifest_edit(
            lambda m: m["modules"].append(
                {**next(e for e in m["modules"] if e["name"] == K + ".0"), "name": K + ".00"}
            )
        ),
        "cannot be part of a low-rank pair",
    ),
    ("cpu-only-lie", "int4", set_key("cpu_only", False), "cpu_only"),
    # dtypes from allow-lists
    (
        "buffer-dtype",
        "int8",
        set_key("buffer_dtypes", {"model.rotary_emb.inv_freq": "Tensor"}),
        "'Tensor'",
    ),
    (
        "buffer-not-rebuilt",
        "int8",
        set_key("buffer_dtypes", {"lm_head.weight": "float16"}),
        "lm_head.weight",
    ),
    ("int8-weight-float", "int8", resize(f"{Q}.weight_int8", dtype=torch.float32), "weight_int8"),
    (
        "int8-scales-float32",
        "int8",
        resize(f"{Q}.scales", dtype=torch.float32),
        "scales is float32",
    ),
    ("w8a8-weight-int32", "w8a8", resize(f"{Q}.weight_int8_t", dtype=torch.int32), "weight_int8_t"),
    (
        "plain-float-as-int",
        "int8",
        resize("model.norm.weight", dtype=torch.int64),
        "model.norm.weight",
    ),
    # shapes checked against the kind and the frame before any kernel runs
    (
        "int8-row-short",
        "int8",
        resize(f"{Q}.weight_int8", rows=63),
        "scales has shape [64], not [63]",
    ),
    ("int8-scales-short", "int8", resize(f"{Q}.scales", rows=60), "scales has shape [60]"),
    ("int8-bias-short", "int8", put(f"{Q}.bias", torch.zeros(3, dtype=torch.bfloat16)), "bias"),
    ("int4-groups-short", "int4", resize(f"{Q}.scales_and_zeros", rows=1), "scales_and_zeros"),
    ("int4-packed-short", "int4", resize(f"{Q}.weight_int4pack", rows=8), "weight_int4pack"),
    ("pair-does-not-chain", "low_rank", resize(f"{K}.0.weight", rows=8), "does not chain"),
    (
        "plain-shape",
        "int8",
        resize("model.embed_tokens.weight", rows=100),
        "model.embed_tokens.weight",
    ),
    ("tensor-no-place", "int8", put(f"{Q}.evil", torch.zeros(1)), "has no place"),
    ("tensor-dunder", "int8", put("__class__", torch.zeros(1)), "has no place"),
    ("tensor-missing", "int8", drop(f"{Q}.scales"), f"{Q}.scales is missing"),
    ("plain-missing", "int8", drop("model.norm.weight"), "missing"),
    (
        "alias-forward",
        "int8",
        set_key("aliases", {"lm_head.forward": "model.norm.weight"}),
        "aliases",
    ),
    ("alias-shape", "int8", set_key("aliases", {"lm_head.weight": "model.norm.weight"}), "aliases"),
    # the manifest's own shape
    ("json-array", "int8", text("[1, 2]"), "JSON object"),
    ("json-broken", "int8", text("{"), "damaged"),
    ("json-deep", "int8", text(nested(100_000)), "damaged"),
    ("modules-object", "int8", set_key("modules", {"a": 1}), "'modules'"),
    ("loader-list", "int8", set_key("loader", ["workbench"]), "loader"),
    ("overrides", "int8", set_key("build_overrides", {"vocab_size": 10**9}), "build_overrides"),
    (
        "overrides-zero",
        "int8",
        set_key("build_overrides", {"num_attention_heads": 0}),
        "build_overrides",
    ),
    (
        "weights-not-safetensors",
        "int8",
        lambda f, e: (f / OWN_WEIGHTS).write_bytes(b"x" * 64),
        "weights cannot be read",
    ),
] + [
    (f"missing-{key}", "int8", manifest_edit(lambda m, k=key: m.__delitem__(k)), f"'{key}' is")
    for key in (
        "loader",
        "weights",
        "cpu_only",
        "modules",
        "attributes",
        "buffer_dtypes",
        "aliases",
        "build_overrides",
    )
]


@pytest.fixture(params=TAMPERED, ids=[case[0] for case in TAMPERED])
def tampered(request, exports, tmp_path):
    _, export, tamper, words = request.param
    folder = tmp_path / "tampered"
    shutil.copytree(exports[export][0], folder)
    tamper(folder, exports)
    return folder, words


def test_a_tampered_export_is_refused_naming_the_field(tampered):
    folder, words = tampered
    with pytest.raises(CorruptModelError) as refused:
        load_model(str(folder), device="cpu")
    message = str(refused.value)
    assert words in message and "\n" not in message


def test_the_cli_refuses_a_tampered_export_in_one_line(tampered, capsys):
    folder, words = tampered
    assert main(["info", "--model", str(folder)]) == 2
    err = capsys.readouterr().err
    # Besides the CLI's progress lines ("[Loading ...]"): one line, the refusal.
    lines = [line for line in err.splitlines() if line.strip() and not line.startswith("[")]
    assert len(lines) == 1 and lines[0].startswith("error: ") and words in lines[0], err


VECTOR = torch.ones(16)


@pytest.mark.parametrize(
    ("tensors", "attributes", "words"),
    [
        ({"weight": VECTOR}, {"width": 16, "eps": 1e-5}, None),
        ({}, {"width": 16, "eps": 1e-5}, None),  # no affine weights
        ({"weight": VECTOR}, {"width": 16, "eps": 1}, "eps"),  # an int
        ({"weight": VECTOR}, {"width": 16, "eps": 0.0}, "eps"),
        ({"weight": VECTOR}, {"width": 0, "eps": 1e-5}, "width"),
        ({"weight": VECTOR}, {"width": 32, "eps": 1e-5}, "float vector of 32"),
        ({"weight": VECTOR.to(torch.int32)}, {"width": 16, "eps": 1e-5}, "float vector"),
        ({"bias": VECTOR}, {"width": 16, "eps": 1e-5}, "bias without a weight"),
    ],
)
def test_a_layernorm_entry_is_checked_before_it_is_built(tensors, attributes, words):
    """Persimmon's per-head q/k norms narrower than its config says (heads
    removed) are written as LayerNorm entries; each is checked first."""
    from core.models.exported.module_kinds import KINDS

    kind = KINDS["LayerNorm"]
    problem = kind.check(tensors, attributes)
    if words is None:
        assert problem is None
        norm = kind.build(dict(tensors), attributes, [])
        assert norm.normalized_shape == (16,) and norm(torch.randn(2, 16)).shape == (2, 16)
    else:
        assert words in problem
