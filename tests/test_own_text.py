"""Evaluating on the user's own text (a UTF-8 or JSONL file: CLI, window) and
BOS at the start of every window where the tokenizer asks for it."""

import hashlib
import json
import re
import shutil
from dataclasses import replace

import pytest
import torch

from core.cli.main import main
from core.data import texts
from core.data.own_text import TextFileError, check_fills_window, read_text_file
from core.data.tokens import bos_to_prepend
from core.evaluate.hf_reference import hf_labels_perplexity
from core.evaluate.perplexity import PerplexityProtocol, compute_perplexity, perplexity_windows
from core.models import loading
from core.models.loading import load_model

SMALL = ["--context-tokens", "64", "--stride", "32", "--windows", "3"]
PYDOC = "\n\n".join(texts.report_texts(texts.PYDOC))


def sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:12]


def test_a_text_file_is_one_document_and_jsonl_one_per_line(tmp_path):
    plain = tmp_path / "notes.txt"
    plain.write_bytes("\ufeffFirst paragraph.\n\nSecond one, café.\n".encode())
    text = read_text_file(plain)
    assert text.documents == ("First paragraph.\n\nSecond one, café.",)  # no byte-order mark
    assert text.label() == f"the file notes.txt (sha256 {sha(plain)})"
    lines = tmp_path / "docs.jsonl"
    lines.write_text('{"text": "one"}\n\n{"text": "two", "id": 7}\n{"text": "  "}\n')
    assert read_text_file(lines).documents == ("one", "two")


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        ("missing.txt", None, "no such text file"),
        ("latin1.txt", "caf\xe9".encode("latin-1"), "is not UTF-8 text (byte 3"),
        ("empty.txt", b"", "holds no text"),
        ("blank.txt", b" \n\n\t", "holds no text"),
        ("nul.txt", b"text\x00more", "looks binary"),
        ("bad.jsonl", b'{"text": "ok"}\n{"text": \n', "line 2 is not JSON"),
        ("number.jsonl", b'{"text": 5}\n', 'line 1 has no string "text" field'),
        ("array.jsonl", b'["text"]\n', 'line 1 has no string "text" field'),
        ("other.jsonl", b'{"body": "x"}\n', 'line 1 has no string "text" field'),
        ("nothing.jsonl", b'{"text": ""}\n', "holds no text"),
    ],
)
def test_bad_files_are_refused_in_one_line(tmp_path, name, content, reason):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(TextFileError, match=re.escape(reason)) as caught:
        read_text_file(path)
    assert "\n" not in str(caught.value)


def test_a_folder_and_a_too_small_text_are_refused(tmp_path):
    with pytest.raises(TextFileError, match="is not a file"):
        read_text_file(tmp_path)
    short = tmp_path / "short.txt"
    short.write_text("A few words.")
    with pytest.raises(TextFileError, match="12 bytes of text: too small to fill one 64-token"):
        check_fills_window(read_text_file(short), 64)


def test_a_changed_file_is_read_again(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("first version of the notes")
    first = read_text_file(path)
    path.write_text("second, longer version of the notes")
    assert read_text_file(path).sha256 != first.sha256


def eval_cli(capsys, *args) -> tuple[int, str, str]:
    """``workbench eval`` in-process (the subprocess path is tests/test_cli_eval.py's)."""
    code = main(["eval", *SMALL, *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_cli_eval_on_a_file_names_it_the_windows_and_tokens(tiny_gpt2_dir, tmp_path, capsys):
    path = tmp_path / "my notes.txt"
    path.write_text(PYDOC[:20_000], encoding="utf-8")
    code, out, err = eval_cli(capsys, "-m", str(tiny_gpt2_dir), "--text", str(path), "--json")
    assert code == 0, err
    result = json.loads(out)["perplexity"]
    assert result["windows"] == 3 and result["tokens_scored"] == 96
    assert f"the file my notes.txt (sha256 {sha(path)})" in result["protocol"]
    assert "3 windows of 64 tokens" in result["protocol"] and "96 tokens" in result["protocol"]
    lines = tmp_path / "docs.jsonl"
    lines.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts.dev_texts("pydoc")))
    code, out, err = eval_cli(capsys, "-m", str(tiny_gpt2_dir), "--text", str(lines))
    assert code == 0, err
    assert "docs.jsonl" in out


@pytest.fixture
def no_model_loads(monkeypatch):
    def must_not_load(*args, **kwargs):
        raise AssertionError(f"a model was loaded: {args} {kwargs}")

    monkeypatch.setattr(loading, "load_model", must_not_load)


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (None, "no such text file"),
        (b"\xff\xfe", "it is UTF-16 (its byte-order mark says so); save it as UTF-8"),
        (b"", "holds no text"),
        (b'{"title": "x"}\n', 'no string "text" field'),
        (b"tiny", "too small to fill one 64-token window"),
    ],
)
def test_cli_refuses_a_bad_file_before_loading_a_model(
    tmp_path, content, reason, no_model_loads, capsys
):
    path = tmp_path / ("text.jsonl" if content and content.startswith(b"{") else "text.txt")
    if content is not None:
        path.write_bytes(content)
    code, _, err = eval_cli(capsys, "--text", str(path))
    assert code == 2
    assert len(err.splitlines()) == 1 and err.startswith("error: ") and reason in err


def test_cli_dev_split_and_its_refusal_for_a_file(tiny_gpt2_dir, tmp_path, capsys):
    code, out, err = eval_cli(capsys, "-m", str(tiny_gpt2_dir), "--text", "pydoc", "--split", "dev")
    assert code == 0, err
    assert "over the dev split of Python help topics" in out
    path = tmp_path / "notes.txt"
    path.write_text(PYDOC[:5000])
    code, _, err = eval_cli(capsys, "--text", str(path), "--split", "dev")
    assert code == 2 and "a file is scored whole" in err


@pytest.fixture(scope="module")
def bos_and_plain(tmp_path_factory, tiny_llama_dir):
    """The tiny Llama twice: its tokenizer with add_bos_token False and True."""
    from transformers import AutoTokenizer

    with_bos = tmp_path_factory.mktemp("bos") / "model"
    shutil.copytree(tiny_llama_dir, with_bos)
    AutoTokenizer.from_pretrained(tiny_llama_dir, add_bos_token=True).save_pretrained(with_bos)
    return load_model(str(with_bos), device="cpu"), load_model(str(tiny_llama_dir), device="cpu")


def test_bos_is_found_from_the_tokenizer(bos_and_plain):
    with_bos, plain = bos_and_plain
    assert bos_to_prepend(with_bos.tokenizer) == with_bos.tokenizer.bos_token_id is not None
    assert bos_to_prepend(plain.tokenizer) is None


def test_bos_starts_every_window_as_context_and_the_label_says_so(bos_and_plain):
    with_bos, plain = bos_and_plain
    protocol = PerplexityProtocol(context_tokens=64, stride=32, quick_windows=3, source="pydoc")
    bos = with_bos.tokenizer.bos_token_id
    windows = perplexity_windows(with_bos.tokenizer, protocol)
    plain_windows = perplexity_windows(plain.tokenizer, protocol)
    for w, p in zip(windows, plain_windows, strict=True):
        assert w.numel() == p.numel() == 64 and w[0] == bos != p[0]
        assert torch.equal(w[1:], p[1:])  # the same text, so the very same scored tokens
    result = compute_perplexity(with_bos.model, with_bos.tokenizer, protocol)
    assert "BOS prepended" in result.protocol
    assert "no BOS" in compute_perplexity(plain.model, plain.tokenizer, protocol).protocol
    # BOS is context only: HF's loss with labels on the last 32 tokens agrees
    assert result.ppl == pytest.approx(hf_labels_perplexity(with_bos.model, windows, 32), rel=1e-3)
    assert result.tokens_scored == 3 * 32


def test_calibration_and_training_windows_start_with_bos_too(bos_and_plain):
    from core.distill.data import TrainingWindows
    from core.passes.calibration import calibration_windows

    with_bos, plain = bos_and_plain
    bos = with_bos.tokenizer.bos_token_id
    calibration = calibration_windows(with_bos.tokenizer, 4, 32, source="pydoc")
    plain_calibration = calibration_windows(plain.tokenizer, 4, 32, source="pydoc")
    assert all(w[0] == bos and w.numel() == 32 for w in calibration)
    pairs = zip(calibration, plain_calibration, strict=True)
    assert all(torch.equal(w[1:], p[1:]) for w, p in pairs)
    for loaded, first_is_bos in ((with_bos, True), (plain, False)):
        training = TrainingWindows(loaded.tokenizer, 32, 2, 0, source="pydoc", max_tokens=5000)
        assert ((training.windows[:, 0] == bos) == first_is_bos).all()


def test_the_experiment_scores_the_chosen_file(tiny_llama_dir, tmp_path):
    from core.jobs.experiment import ExperimentSettings, run_experiment
    from core.measure.speed import BenchSettings
    from core.passes.recipe import Recipe
    from core.results.store import RunRecord

    path = tmp_path / "essay.txt"
    path.write_text(PYDOC[:8000])
    settings = ExperimentSettings(
        bench=BenchSettings(prompt_tokens=8, new_tokens=4, warmup=0, min_repeats=1, min_time_s=0),
        perplexity=PerplexityProtocol(context_tokens=64, stride=32, quick_windows=3),
        text_source=str(path),
    )
    assert settings.calibration_source == texts.NEWS  # a file is scored, never fitted
    assert replace(settings, text_source="pydoc").calibration_source == "pydoc"
    loaded = load_model(str(tiny_llama_dir), device="cpu")
    record = [e for e in run_experiment(loaded, Recipe(()), settings) if isinstance(e, RunRecord)]
    assert f"the file essay.txt (sha256 {sha(path)})" in record[0].eval_protocol
    assert record[0].eval_protocol.startswith("quick: 3 windows of 64 tokens")


def test_the_window_offers_bundled_texts_and_a_checked_file(qtbot, tmp_path):
    from app.eval_text_control import EvaluationTextControl
    from core.jobs.experiment import ExperimentSettings

    control = EvaluationTextControl()
    qtbot.addWidget(control)
    base = ExperimentSettings(text_source=None)
    assert control.text_source() is None and control.apply(base) is base
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"\xff")
    assert not control.set_file(str(bad))
    assert "not UTF-8" in control.problem.text() and control.text_source() is None
    good = tmp_path / "good.txt"
    good.write_text("Some text of my own.")
    assert control.set_file(str(good))
    assert control.apply(base).text_source == str(good.resolve())
    assert control.combo.currentText() == "good.txt" and control.problem.text() == ""
    control.combo.setCurrentIndex(1)
    control.combo.activated.emit(1)
    assert control.apply(base).text_source == "pydoc"
