"""Bad input, table-driven, through core.cli.main.main in-process: each row must
exit 2 with exactly one line on stderr, starting with "error:" and holding the
expected reason, no traceback, and (first table) no model loaded at all."""

from __future__ import annotations

import json

import pytest

from core.cli.main import main
from core.models import loading


def _recipe(*passes, **top) -> str:
    return json.dumps({"format": 1, "passes": list(passes)} | top)


def _pass(name: str, **options) -> dict:
    from core.passes import REGISTRY

    return {"pass": name, "version": REGISTRY[name].version} | options


# Recipe files: name -> text (bytes for the not-UTF-8 one). Argv rows name them as @name.
RECIPES = {
    "array": "[]",
    "array_of_passes": json.dumps([_pass("prune_mlp")]),
    "number": "42",
    "null": "null",
    "string": '"prune_mlp"',
    "nested_arrays": "[" * 100_000 + "]" * 100_000,
    "nested_objects": '{"a":' * 100_000 + "1" + "}" * 100_000,
    "nested_in_option": _recipe(_pass("prune_mlp", fraction=[[[[[0.25]]]]])),
    "oversized": _recipe() + " " * 1_000_001,
    "invalid_json": '{"format": 1, "passes": [',
    "not_utf8": b'{"format": 1, "passes": []}\xff\xfe',
    "nan": '{"format": 1, "passes": [{"pass": "prune_mlp", "version": 1, "fraction": NaN}]}',
    "infinity": '{"format": 1, "passes": [{"pass": "low_rank", "version": 1, '
    '"rank_ratio": Infinity}]}',
    "minus_infinity": '{"format": 1, "passes": [{"pass": "prune_mlp", "version": 1, '
    '"fraction": -Infinity}]}',
    "float_overflow": '{"format": 1, "passes": [{"pass": "prune_mlp", "version": 1, '
    '"fraction": 1e400}]}',
    "huge_integer": '{"format": 1, "passes": [{"pass": "prune_layers", "version": 1, '
    '"count": ' + "9" * 5000 + "}]}",
    "no_format": json.dumps({"passes": []}),
    "format_string": json.dumps({"format": "1", "passes": []}),
    "format_bool": json.dumps({"format": True, "passes": []}),
    "format_float": json.dumps({"format": 1.0, "passes": []}),
    "format_2": json.dumps({"format": 2, "passes": []}),
    "unknown_key": _recipe(backend="ort"),
    "unknown_key_newline": _recipe(**{"a\nb": 1}),
    "passes_object": json.dumps({"format": 1, "passes": {"pass": "prune_mlp"}}),
    "passes_string": json.dumps({"format": 1, "passes": "prune_mlp"}),
    "pass_list": json.dumps({"format": 1, "passes": [["prune_mlp", 1]]}),
    "pass_string": json.dumps({"format": 1, "passes": ["prune_mlp"]}),
    "pass_null": json.dumps({"format": 1, "passes": [None]}),
    "pass_unnamed": json.dumps({"format": 1, "passes": [{"version": 1}]}),
    "pass_name_list": json.dumps({"format": 1, "passes": [{"pass": ["prune_mlp"]}]}),
    "pass_unknown": json.dumps({"format": 1, "passes": [{"pass": "os.system", "version": 1}]}),
    "version_missing": json.dumps({"format": 1, "passes": [{"pass": "prune_mlp"}]}),
    "version_bool": json.dumps({"format": 1, "passes": [{"pass": "low_rank", "version": True}]}),
    "version_string": json.dumps({"format": 1, "passes": [{"pass": "low_rank", "version": "1"}]}),
    "version_99": _recipe(_pass("low_rank") | {"version": 99}),
    "fraction_string": _recipe(_pass("prune_mlp", fraction="0.25")),
    "fraction_bool": _recipe(_pass("prune_mlp", fraction=True)),
    "fraction_null": _recipe(_pass("prune_mlp", fraction=None)),
    "fraction_list": _recipe(_pass("prune_mlp", fraction=[0.25])),
    "fraction_object": _recipe(_pass("prune_mlp", fraction={"value": 0.25})),
    "fraction_negative": _recipe(_pass("prune_mlp", fraction=-0.25)),
    "fraction_above_max": _recipe(_pass("prune_mlp", fraction=0.95)),
    "count_float": _recipe(_pass("prune_layers", count=1.5)),
    "count_whole_float": _recipe(_pass("prune_layers", count=2.0)),
    "count_bool": _recipe(_pass("prune_layers", count=True)),
    "count_string": _recipe(_pass("prune_layers", count="2")),
    "count_negative": _recipe(_pass("prune_layers", count=-1)),
    "count_huge": _recipe(_pass("prune_layers", count=10**30)),
    "group_size_float": _recipe(_pass("int4_weight_only", group_size=128.0)),
    "group_size_choice": _recipe(_pass("int4_weight_only", group_size=100)),
    "dtype_number": _recipe(_pass("cast", dtype=16)),
    "dtype_choice": _recipe(_pass("cast", dtype="float8")),
    "unknown_option": _recipe(_pass("prune_mlp", fraction=0.25, speed=11)),
    "twice": _recipe(_pass("prune_mlp"), _pass("prune_mlp")),
    "quantize_not_last": _recipe(_pass("int8_weight_only"), _pass("prune_mlp")),
    "two_quantizers": _recipe(_pass("int8_weight_only"), _pass("cast")),
}

D = "default"  # the embedded model's id: these rows must never get as far as loading it

REFUSED_BEFORE_LOADING = [
    # generate: counts, sampling, seed, threads, device, choices
    (["generate", "-n", "0"], "--max-new-tokens/-n: must be between 1 and"),
    (["generate", "-n", "-5"], "--max-new-tokens/-n: must be between 1 and"),
    (["generate", "-n", "abc"], "must be a whole number, got 'abc'"),
    (["generate", "-n", "1.5"], "must be a whole number, got '1.5'"),
    (["generate", "-n", "True"], "must be a whole number, got 'True'"),
    (["generate", "-n", "1e3"], "must be a whole number, got '1e3'"),
    (["generate", "-n", "9" * 5000], "must be a whole number"),
    (["generate", "-n", "99999999999"], "must be between 1 and 1,000,000"),
    (["generate", "--temperature", "-1"], "--temperature: must be in [0, inf)"),
    (["generate", "--temperature", "nan"], "--temperature: must be a finite number"),
    (["generate", "--temperature", "inf"], "--temperature: must be a finite number"),
    (["generate", "--temperature", "hot"], "--temperature: must be a number"),
    (["generate", "--top-p", "0"], "--top-p: must be in (0, 1]"),
    (["generate", "--top-p", "1.5"], "--top-p: must be in (0, 1]"),
    (["generate", "--top-p", "nan"], "--top-p: must be a finite number"),
    (["generate", "--top-k", "-1"], "--top-k: must be between 0 and"),
    (["generate", "--seed", "-1"], "--seed: must be between 0 and"),
    (["generate", "--seed", str(2**64)], "--seed: must be between 0 and"),
    (["generate", "--threads", "0"], "--threads: must be between 1 and 4,096"),
    (["generate", "--threads", "-2"], "--threads: must be between 1 and 4,096"),
    (["generate", "--threads", "99999999999999999999"], "--threads: must be between 1"),
    (["generate", "--threads", "4096"], "--threads: must be at most"),  # more than the CPUs
    (["generate", "--device", "foo"], "--device: must be auto, cpu, cuda or cuda:N"),
    (["generate", "--device", "cuda:-1"], "--device: must be auto, cpu, cuda or cuda:N"),
    (["generate", "--device", "meta"], "--device: must be auto, cpu, cuda or cuda:N"),
    (["generate", "--dtype", "float8"], "--dtype: invalid choice: 'float8'"),
    (["generate", "--backend", "onnx"], "--backend: invalid choice: 'onnx'"),
    (["generate", "--int8"], "--int8 needs --backend ort"),
    # bench: protocol sizes and repeats
    (["bench", "--prompt-tokens", "0"], "--prompt-tokens: must be between 1 and"),
    (["bench", "--prompt-tokens", "-128"], "--prompt-tokens: must be between 1 and"),
    (["bench", "--new-tokens", "1"], "--new-tokens: must be between 2 and"),
    (["bench", "--new-tokens", "64.0"], "--new-tokens: must be a whole number"),
    (["bench", "--warmup", "-1"], "--warmup: must be between 0 and"),
    (["bench", "--min-repeats", "0"], "--min-repeats: must be between 1 and"),
    (["bench", "--max-repeats", "0"], "--max-repeats: must be between 1 and"),
    (["bench", "--min-repeats", "5", "--max-repeats", "2"], "--min-repeats 5 is more than"),
    (["eval", "--stride", "1000"], "--stride 1,000: must be less than the window (512 tokens"),
    (["bench", "--min-time", "-1"], "--min-time: must be in [0, 86400]"),
    (["bench", "--min-time", "nan"], "--min-time: must be a finite number"),
    (["bench", "--min-time", "1e309"], "--min-time: must be a finite number"),
    (["bench", "--threads", "1.5"], "--threads: must be a whole number"),
    # eval: windows
    (["eval", "--windows", "0"], "--windows: must be between 1 and 100,000"),
    (["eval", "--windows", "-3"], "--windows: must be between 1 and 100,000"),
    (["eval", "--context-tokens", "1"], "--context-tokens: must be between 2 and"),
    (["eval", "--context-tokens", "2.5"], "--context-tokens: must be a whole number"),
    (["eval", "--stride", "0"], "--stride: must be between 1 and"),
    (["eval", "--stride", "600"], "--stride 600: must be less than the window"),
    (["eval", "--quick", "--full"], "not allowed with argument"),
    (["eval", "--sentiment", "--backend", "ort"], "--sentiment runs on the torch backend only"),
    # compress --pass: each value read as the option's declared type, then ranged
    (["compress", "--pass", "prune_mlp:fraction=abc"], "fraction must be a number, got 'abc'"),
    (["compress", "--pass", "prune_mlp:fraction=[0.25]"], "fraction must be a number"),
    (["compress", "--pass", "prune_mlp:fraction=nan"], "prune_mlp.fraction must be a finite"),
    (["compress", "--pass", "prune_mlp:fraction=inf"], "prune_mlp.fraction must be a finite"),
    (["compress", "--pass", "prune_mlp:fraction=-0.1"], "must be between 0 and 0.9, got -0.1"),
    (["compress", "--pass", "prune_mlp:fraction=2"], "must be between 0 and 0.9, got 2.0"),
    (["compress", "--pass", "prune_layers:count=1.5"], "count must be a whole number"),
    (["compress", "--pass", "prune_layers:count=true"], "count must be a whole number"),
    (["compress", "--pass", "prune_layers:count=-1"], "prune_layers.count must be between 0"),
    (["compress", "--pass", "prune_layers:count=1000"], "prune_layers.count must be between 0"),
    (["compress", "--pass", "low_rank:rank_ratio=0"], "low_rank.rank_ratio must be between"),
    (["compress", "--pass", "int4_weight_only:group_size=100"], "must be one of 32, 64, 128"),
    (["compress", "--pass", "int4_weight_only:group_size=big"], "must be a whole number"),
    (["compress", "--pass", "int4_weight_only:method=nf4"], "must be one of rtn, gptq, gptq_"),
    (["compress", "--pass", "cast:dtype=float8"], "cast.dtype must be one of"),
    (["compress", "--pass", "prune_mlp:speed=11"], "unknown option 'speed'; known: fraction"),
    (["compress", "--pass", "prune_mlp:fraction"], "expected key=value"),
    (["compress", "--pass", "prune_mlp:fraction=0.1,fraction=0.2"], "fraction given twice"),
    (["compress", "--pass", "nosuch"], "unknown pass 'nosuch'"),
    (["compress", "--pass", "int8_weight_only", "--pass", "cast"], "two quantizations"),
    (["compress", "--pass", "prune_mlp", "--recipe", "@twice"], "--recipe or --pass, not both"),
    (["compress", "--backend", "onnx"], "--backend: invalid choice: 'onnx'"),
    (["compress", "--recipe", "@missing"], "cannot read recipe"),
    (["compress", "--recipe", "@directory"], "cannot read recipe"),
    # export and distill read recipes and numbers the same way
    (["export", "--recipe", "@array", "--out", "@out"], "got an array"),
    (["export", "--recipe", "@nan", "--out", "@out"], "recipe holds NaN"),
    (["export", "--recipe", "@count_bool", "--out", "@out"], "count must be a whole number"),
    (["export", "--recipe", "@twice", "--out", "@out", "--format", "pdf"], "unknown export"),
    (["export", "--out", "@out"], "one of the arguments --recipe --run --last is required"),
    (["export", "--last", "--out", "@out", "--gguf-type", "q4_0"], "add gguf to --format"),
    (["distill"], "a student needs --drop-layers and/or --mlp-remove"),
    (["distill", "--drop-layers", "-1"], "--drop-layers: must be between 0 and"),
    (["distill", "--drop-layers", "1.5"], "--drop-layers: must be a whole number"),
    (["distill", "--drop-layers", "100"], "prune_layers.count must be between 0 and 64"),
    (["distill", "--mlp-remove", "nan"], "--mlp-remove: must be a finite number"),
    (["distill", "--mlp-remove", "-0.1"], "--mlp-remove: must be in [0, inf)"),
    (["distill", "--mlp-remove", "0.95"], "prune_mlp.fraction must be between 0 and 0.9"),
    (["distill", "--drop-layers", "1", "--steps", "-1"], "--steps: must be between 0 and"),
    (["distill", "--drop-layers", "1", "--steps", "0"], "give a step budget"),
    (["distill", "--drop-layers", "1", "--time-budget", "0"], "--time-budget: must be in (0,"),
    (["distill", "--drop-layers", "1", "--time-budget", "nan"], "--time-budget: must be a fin"),
    (["distill", "--drop-layers", "1", "--lr", "0"], "--lr: must be in (0, 1]"),
    (["distill", "--drop-layers", "1", "--lr=-1e-4"], "--lr: must be in (0, 1]"),
    (["distill", "--drop-layers", "1", "--lr", "nan"], "--lr: must be a finite number"),
    (
        ["distill", "--drop-layers", "1", "--temperature", "0"],
        "--temperature: must be in [0.05, 100]",
    ),
    (["distill", "--drop-layers", "1", "--alpha-lm", "-1"], "--alpha-lm: must be in [0, 1000]"),
    (["distill", "--drop-layers", "1", "--beta-hidden", "inf"], "--beta-hidden: must be a fin"),
    (["distill", "--drop-layers", "1", "--batch-size", "0"], "--batch-size: must be between 1"),
    (["distill", "--drop-layers", "1", "--seq-len", "1"], "--seq-len: must be between 2 and"),
    (["distill", "--drop-layers", "1", "--warmup-steps", "-1"], "--warmup-steps: must be"),
    (["distill", "--drop-layers", "1", "--eval-every", "-1"], "--eval-every: must be between"),
    (["distill", "--drop-layers", "1", "--eval-windows", "0"], "--eval-windows: must be"),
    (["distill", "--drop-layers", "1", "--eval-context", "1"], "--eval-context: must be"),
    (["distill", "--drop-layers", "1", "--checkpoint-every", "-1"], "--checkpoint-every: must"),
    (["distill", "--drop-layers", "1", "--seed", "-1"], "--seed: must be between 0 and"),
    (["distill", "--drop-layers", "1", "--resume"], "--resume needs --checkpoint-dir"),
    (["train-classifier", "--epochs", "0"], "--epochs: must be between 1 and 1,000"),
    (["train-classifier", "--epochs", "-1"], "--epochs: must be between 1 and 1,000"),
    (["train-classifier", "--epochs", "1.5"], "--epochs: must be a whole number"),
    (["train-classifier", "--train-examples", "-1"], "--train-examples: must be between 0"),
    (["train-classifier", "--threads", "0"], "--threads: must be between 1 and 4,096"),
    # the command line itself
    ([], "the following arguments are required: COMMAND"),
    (["bogus"], "invalid choice: 'bogus'"),
    (["info", "stray\nargument"], "unrecognized arguments: stray\\nargument"),
    (["info", "--no-such-flag"], "unrecognized arguments: --no-such-flag"),
    (["info", "--model"], "argument --model/-m: expected one argument"),
    (["info", "--model", ""], "--model/-m: must name a model or a folder, got ''"),
    (["info", "--model", "a\x00b"], "--model/-m: must name a model or a folder"),
    (["eval", "--reference", " "], "--reference: must name a model or a folder"),
]

# Every recipe file, through compress --recipe, with the reason it is refused.
RECIPE_REASONS = {
    "array": "a recipe is a JSON object",
    "array_of_passes": "got an array",
    "number": "got a number",
    "null": "got null",
    "string": "got a string",
    "nested_arrays": "nested too deeply",
    "nested_objects": "nested too deeply",
    "nested_in_option": "prune_mlp.fraction must be a number",
    "oversized": "is over 1,000,000 bytes",
    "invalid_json": "recipe is not valid JSON",
    "not_utf8": "is not UTF-8 text",
    "nan": "recipe holds NaN; every number must be finite",
    "infinity": "recipe holds Infinity",
    "minus_infinity": "recipe holds -Infinity",
    "float_overflow": "prune_mlp.fraction must be a finite number",
    "huge_integer": "a number with too many digits",
    "no_format": "unknown recipe format None",
    "format_string": "unknown recipe format '1'",
    "format_bool": "unknown recipe format True",
    "format_float": "unknown recipe format 1.0",
    "format_2": "unknown recipe format 2",
    "unknown_key": "unknown recipe key(s) 'backend'",
    "unknown_key_newline": "unknown recipe key(s) 'a\\nb'",
    "passes_object": "passes are a JSON array, got an object",
    "passes_string": "passes are a JSON array, got a string",
    "pass_list": "each pass is a JSON object",
    "pass_string": "each pass is a JSON object",
    "pass_null": "each pass is a JSON object",
    "pass_unnamed": "unknown pass None",
    "pass_name_list": "unknown pass ['prune_mlp']",
    "pass_unknown": "unknown pass 'os.system'",
    "version_missing": "prune_mlp version None is not supported",
    "version_bool": "low_rank version True is not supported",
    "version_string": "low_rank version '1' is not supported",
    "version_99": "low_rank version 99 is not supported",
    "fraction_string": "prune_mlp.fraction must be a number, got '0.25'",
    "fraction_bool": "prune_mlp.fraction must be a number, got True",
    "fraction_null": "prune_mlp.fraction must be a number, got None",
    "fraction_list": "prune_mlp.fraction must be a number, got [0.25]",
    "fraction_object": "prune_mlp.fraction must be a number",
    "fraction_negative": "prune_mlp.fraction must be between 0 and 0.9, got -0.25",
    "fraction_above_max": "prune_mlp.fraction must be between 0 and 0.9, got 0.95",
    "count_float": "prune_layers.count must be a whole number, got 1.5",
    "count_whole_float": "prune_layers.count must be a whole number, got 2.0",
    "count_bool": "prune_layers.count must be a whole number, got True",
    "count_string": "prune_layers.count must be a whole number, got '2'",
    "count_negative": "prune_layers.count must be between 0 and 64, got -1",
    "count_huge": "prune_layers.count must be between 0 and 64",
    "group_size_float": "int4_weight_only.group_size must be a whole number, got 128.0",
    "group_size_choice": "int4_weight_only.group_size must be one of 32, 64, 128, got 100",
    "dtype_number": "cast.dtype must be text, got 16",
    "dtype_choice": "cast.dtype must be one of bfloat16, float16",
    "unknown_option": "prune_mlp: unknown option(s) 'speed'; known: fraction",
    "twice": "prune_mlp appears twice",
    "quantize_not_last": "put the quantization last",
    "two_quantizers": "two quantizations",
}
assert set(RECIPE_REASONS) == set(RECIPES)
REFUSED_BEFORE_LOADING += [
    (["compress", "--recipe", f"@{name}"], reason) for name, reason in RECIPE_REASONS.items()
]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """@name -> path: the recipe files, a missing file, a folder, an export target."""
    folder = tmp_path_factory.mktemp("bad-inputs")
    paths = {}
    for name, text in RECIPES.items():
        path = folder / f"{name}.json"
        path.write_bytes(text if isinstance(text, bytes) else text.encode())
        paths[f"@{name}"] = str(path)
    paths["@missing"] = str(folder / "no-such-recipe.json")
    paths["@directory"] = str(folder)
    paths["@out"] = str(folder / "export-target")
    return paths


@pytest.fixture
def no_model_loads(monkeypatch, tmp_path):
    """Any attempt to load a model fails the test; the results store is private."""

    def must_not_load(*args, **kwargs):
        raise AssertionError(f"a model was loaded: {args} {kwargs}")

    monkeypatch.setattr(loading, "load_model", must_not_load)
    monkeypatch.setenv("WORKBENCH_DATA_DIR", str(tmp_path / "data"))


def run(argv: list[str], capsys) -> tuple[int, str]:
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.err


def assert_one_error_line(code: int, err: str, fragment: str) -> None:
    assert code == 2, err
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("error: "), lines
    assert fragment in lines[0], lines[0]


def _with_model(argv: list[str]) -> list[str]:
    """``--model default`` after the command, for commands that take a model."""
    takes_model = {"info", "generate", "bench", "eval", "compress", "export", "distill"}
    if argv and argv[0] in takes_model and "--model" not in argv:
        return [argv[0], "--model", D, *argv[1:]]
    return argv


@pytest.mark.parametrize(
    ("argv", "fragment"),
    REFUSED_BEFORE_LOADING,
    ids=[" ".join(a)[:60] for a, _ in REFUSED_BEFORE_LOADING],
)
def test_refused_in_one_line_before_loading(argv, fragment, files, no_model_loads, capsys):
    argv = [files.get(a, a) for a in _with_model(argv)]
    code, err = run(argv, capsys)
    assert_one_error_line(code, err, fragment)


def test_the_export_target_is_untouched(files, no_model_loads, capsys):
    code, err = run(["export", "--recipe", files["@nan"], "--out", files["@out"]], capsys)
    assert code == 2
    from pathlib import Path

    assert not Path(files["@out"]).exists()


# Refusals that need the model's shape: after loading, still one reason, no traceback.
REFUSED_AFTER_LOADING = [
    (["bench", "--prompt-tokens", "300"], "over the model's 256-token context"),
    (["generate", "-p", ""], "the prompt is empty"),
    (
        ["distill", "--drop-layers", "2", "--no-eval"],
        "dropping 2 layers leaves none of the model's 2",
    ),
    (
        ["distill", "--drop-layers", "1", "--eval-context", "512"],
        "--eval-context 512 is over the model's 256-token",
    ),
    (["distill", "--drop-layers", "1", "--seq-len", "1000"], "--seq-len 1000 is over"),
    (["compress", "--pass", "prune_layers:count=5", "--no-eval"], "cannot drop 5 of 2 layers"),
]


@pytest.mark.parametrize(
    ("argv", "fragment"), REFUSED_AFTER_LOADING, ids=[" ".join(a) for a, _ in REFUSED_AFTER_LOADING]
)
def test_refused_in_one_line_after_loading(argv, fragment, tiny_llama_dir, capsys):
    code, err = run([argv[0], "--model", str(tiny_llama_dir), *argv[1:]], capsys)
    assert code == 2, err
    assert "Traceback" not in err
    last = err.splitlines()[-1]
    assert last.startswith("error: ") and fragment in last, last
    assert sum("error" in line for line in err.splitlines()) == 1  # before it: progress only


@pytest.mark.parametrize(
    ("name", "fragment"),
    [("missing\nfolder", "No such folder"), ("", "is not a Hugging Face model folder")],
)
def test_loader_refusals_stay_one_line(name, fragment, tmp_path, capsys):
    """A model path holding a newline (or a folder without a model) is refused
    by the loader; the message quotes it, escaped onto one line."""
    code, err = run(["info", "--model", str(tmp_path / name)], capsys)
    assert_one_error_line(code, err, fragment)


def test_compress_on_onnx_runtime_applies_the_recipe_then_exports(
    tiny_llama_dir, tmp_path, monkeypatch, capsys
):
    """`compress --backend ort` used to crash (args.int8); now the recipe is
    applied to the PyTorch model, the result exported and run in ONNX Runtime."""
    monkeypatch.setenv("WORKBENCH_CACHE_DIR", str(tmp_path / "cache"))
    argv = ["compress", "--model", str(tiny_llama_dir), "--pass", "prune_mlp:fraction=0.5"]
    code = main([*argv, "--backend", "ort", "--no-eval", "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    record = json.loads(captured.out)
    assert record["backend"] == "ort" and "[ONNX Runtime]" in record["recipe_name"]
    assert record["recipe"]["passes"] == [{"pass": "prune_mlp", "version": 1, "fraction": 0.5}]
    assert record["metrics"]["decode_ms_per_token"] > 0
    # the pruned model was exported (MLP 128 -> 64 neurons), not the original
    (export,) = (tmp_path / "cache" / "onnx").iterdir()
    assert json.loads((export / "config.json").read_text())["intermediate_size"] == 64


def test_an_export_of_graphs_only_names_the_folders_to_load(tmp_path, capsys):
    # an export with onnx and gguf but no hf: "has no config.json" alone misled (sweep 14)
    root = tmp_path / "export"
    for name in ("onnx", "onnx-int8"):
        (root / name).mkdir(parents=True)
        (root / name / "config.json").write_text("{}")
    (root / "gguf").mkdir()
    assert main(["info", "--model", str(root)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "load one of its folders" in err and str(root / "onnx-int8") in err
    assert str(root / "gguf") not in err
