"""Prompt lookup decoding (core/runtime/prompt_lookup.py): drafts copied from
the text so far, kept where the model agrees. It must give the model's own
greedy tokens, on every runner and cache kind, with drafts both kept and
rejected (the cache rolled back), and refuse what it cannot do in one line."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from core.models.loading import load_model
from core.onnx.cache import cached_onnx_export
from core.onnx.export import MODEL_FILE
from core.runtime.prompt_lookup import LookupCounts, PromptLookup
from tests.test_cli import run_cli
from tests.tiny_models import save_tiny_model

# Random tokens, repeated: the prompt offers drafts that a random model
# mostly rejects at first, then its own repetitions offer drafts it keeps.
# The runs below look up single-token tails too (min_ngram=1), so that both
# happen on every family.
SEGMENT = [5, 17, 42, 7, 99, 3, 64, 12, 250, 31]
PROMPT = torch.tensor([SEGMENT + SEGMENT[:6] + [77, 8] + SEGMENT[:4]])
NEW = 40


def test_a_draft_is_what_followed_the_tail_earlier():
    lookup = PromptLookup(draft_tokens=3, max_ngram=2, min_ngram=1)
    history = np.array([1, 2, 3, 4, 5, 9, 1, 2])
    assert lookup.draft(history, room=10) == [3, 4, 5]  # after the earlier [1, 2]
    assert lookup.draft(history, room=2) == [3, 4]  # never past the room left
    assert lookup.draft(np.array([1, 2, 3]), room=10) == []  # the tail is new
    # the longest tail wins: [7, 1] occurs once, 1 alone also after 5
    assert lookup.draft(np.array([7, 1, 8, 5, 1, 6, 7, 1]), room=10) == [8, 5, 1]


def test_a_match_just_before_the_tail_still_drafts_a_whole_run():
    """In a loop (x x x x) the latest match is followed by the tail alone; the
    draft comes from the earliest one instead."""
    lookup = PromptLookup(draft_tokens=4, max_ngram=1, min_ngram=1)
    assert lookup.draft(np.array([6, 6, 6, 6, 6, 6]), room=10) == [6, 6, 6, 6]


def test_a_single_token_tail_is_not_looked_up_by_default():
    assert PromptLookup(4).draft(np.array([1, 2, 3, 9, 1]), room=10) == []
    assert PromptLookup(4, min_ngram=1).draft(np.array([1, 2, 3, 9, 1]), room=10) == [2, 3, 9, 1]


@pytest.mark.parametrize(
    "draft_tokens, max_ngram, min_ngram", [(0, 3, 1), (65, 3, 1), (4, 0, 1), (4, 9, 1), (4, 2, 3)]
)
def test_settings_out_of_range_are_refused(draft_tokens, max_ngram, min_ngram):
    with pytest.raises(ValueError, match="prompt lookup"):
        PromptLookup(draft_tokens, max_ngram, min_ngram)


def _plain(model, ids, new, stops=frozenset()):
    from core.runtime.runners import steps_function

    return [s.token_id for s in steps_function(model)(model, ids, new, stop_ids=stops)]


def _looked_up(model, ids, new, stops=frozenset(), draft_tokens=6):
    from core.runtime.runners import lookup_steps_function

    counts = LookupCounts(draft_tokens)
    steps = lookup_steps_function(model)(
        model, ids, new, PromptLookup(draft_tokens, min_ngram=1), counts, stop_ids=stops
    )
    return [s.token_id for s in steps], counts


def _recorded(model, ids, new, record):
    """Tokens of a lookup run, each model step recorded as (tokens yielded
    before it, the cache's length before it, the ids fed, their logits)."""
    from core.runtime.runners import lookup_steps_function

    counts = LookupCounts(6)
    tokens: list[int] = []
    calls: list[tuple] = []
    record(lambda fed, length, logits: calls.append((len(tokens), length, fed, logits)))
    for step in lookup_steps_function(model)(model, ids, new, PromptLookup(6, min_ngram=1), counts):
        tokens.append(step.token_id)
    return tokens, counts, calls


def _check_every_step(calls, prompt, tokens, full_logits):
    """The cache held exactly the sequence so far before each step (rejected
    drafts cut away), and every logit row that picked a token equals the
    logits of one pass over the whole sequence. A cache that kept a rejected
    draft fails the first; a wrong step over several tokens, the second."""
    sequence = prompt + tokens
    checked = 0
    for produced, length, fed, logits in calls:
        assert length == len(prompt) + produced - 1, (produced, length)
        keep = logits.shape[1]
        for row in range(keep):
            position = length + len(fed) - keep + row
            if position >= len(sequence) - 1:
                break
            if fed[: position - length + 1] != sequence[length : position + 1]:
                break  # past the first draft token the model rejected
            assert torch.allclose(logits[0, row], full_logits[position], atol=1e-4, rtol=1e-4)
            checked += 1
    assert checked >= len(tokens) - 1  # every token after the first had its row compared


def _torch_recorder(model):
    def record(callback):
        def hook(module, args, kwargs, output):
            if kwargs.get("cache") is None:  # the check's own pass over the whole sequence
                return
            fed = kwargs["input_ids"][0].tolist()
            length = kwargs["cache"].get_seq_length() - len(fed)
            callback(fed, length, output.logits.detach())

        model.register_forward_hook(hook, with_kwargs=True)

    return record


@pytest.mark.parametrize(
    "kind, overrides",
    [
        ("llama", {}),
        ("gpt2", {}),
        ("mistral", {}),  # a sliding window of 8: its layers record what they drop
        ("qwen2", {}),
        ("phi3", {}),
        ("gemma2", {}),  # sliding and global layers, soft-capped logits
    ],
)
def test_pytorch_gives_the_models_own_greedy_tokens(tmp_path, kind, overrides):
    folder = save_tiny_model(kind, tmp_path / kind, seed=1, **overrides)
    model = load_model(str(folder), device="cpu").model
    plain = _plain(model, PROMPT, NEW)
    tokens, counts, calls = _recorded(model, PROMPT, NEW, _torch_recorder(model))
    assert tokens == plain
    # Both paths ran: drafts kept, and drafts rejected (the cache cut back).
    assert 0 < counts.accepted < counts.drafted
    assert counts.steps < NEW - 1  # fewer model steps than tokens after the first
    with torch.no_grad():
        full = model(input_ids=torch.tensor([PROMPT[0].tolist() + tokens])).logits[0]
    _check_every_step(calls[1:], PROMPT[0].tolist(), tokens, full)


def test_a_stop_token_inside_a_kept_draft_ends_the_answer_there(tiny_llama_dir):
    model = load_model(str(tiny_llama_dir), device="cpu").model
    plain = _plain(model, PROMPT, NEW)
    stop = plain[len(plain) // 2]
    tokens, _ = _looked_up(model, PROMPT, NEW, stops={stop})
    assert tokens == plain[: plain.index(stop) + 1]


@pytest.fixture(scope="module")
def graphs(tmp_path_factory, tiny_llama_dir):
    loaded = load_model(str(tiny_llama_dir), device="cpu")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("WORKBENCH_CACHE_DIR", str(tmp_path_factory.mktemp("lookup-cache")))
        folders = {
            "traced": cached_onnx_export(loaded),
            "fused": cached_onnx_export(loaded, fused=True),
            "fused-w8": cached_onnx_export(loaded, weight_bits=8, fused=True),
        }
    return loaded, folders


@pytest.mark.parametrize("graph", ["traced", "fused"])  # a copied cache; one updated in place
def test_onnx_runtime_gives_the_graphs_own_greedy_tokens(graphs, graph):
    from core.runtime.onnx.ort_model import OrtCausalLM

    loaded, folders = graphs
    config = loaded.model.config
    model = OrtCausalLM(folders[graph] / MODEL_FILE, config, loaded.model.generation_config, "cpu")
    plain = _plain(model, PROMPT, NEW)

    def record(callback):
        step = model.step

        def recorded_step(input_ids, past, positions):
            length = past.length if hasattr(past, "length") else past[0].shape()[2]
            out = step(input_ids, past, positions)
            callback(input_ids[0].tolist(), length, out.logits)
            return out

        model.step = recorded_step

    tokens, counts, calls = _recorded(model, PROMPT, NEW, record)
    assert tokens == plain
    assert 0 < counts.accepted < counts.drafted
    del model.step  # the class's own again, for the pass over the whole sequence
    full = model.forward(torch.tensor([PROMPT[0].tolist() + tokens])).logits[0]
    _check_every_step(calls[1:], PROMPT[0].tolist(), tokens, full)


def test_a_quantized_graph_says_its_answer_can_differ(graphs):
    """ONNX Runtime runs a several-token step of a MatMulNBits graph through
    another kernel than a one-token step: the summary says so; an fp32 graph's
    answer is the plain one and carries no such note."""
    from core.models.loading_onnx import load_onnx_folder
    from core.runtime.generation import GenerationSummary, stream_generation

    notes = {}
    for graph in ("fused", "fused-w8"):
        opened = load_onnx_folder(graphs[1][graph], graph, "cpu")
        events = list(stream_generation(opened, "abc abc abc", 12, lookup=PromptLookup(4)))
        summary = events[-1]
        assert isinstance(summary, GenerationSummary) and summary.new_tokens == 12
        notes[graph] = summary.lookup.get("note", "")
    assert notes["fused"] == "" and "another ONNX Runtime kernel" in notes["fused-w8"]


def test_the_cli_reports_the_drafts_and_refuses_what_cannot_combine(tiny_llama_dir):
    import json

    base = ("generate", "-m", str(tiny_llama_dir), "-p", "abc abc abc abc", "-n", "12")
    out = run_cli(*base, "--prompt-lookup", "4", "--json")
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)
    assert summary["lookup"]["draft_tokens"] == 4 and summary["new_tokens"] == 12
    plain = json.loads(run_cli(*base, "--json").stdout)
    assert summary["text"] == plain["text"]
    for extra, said in [
        (("--temperature", "0.7"), "greedy"),
        (("--num-beams", "2"), "beam search"),
        (("--backend", "torch-compile"), "compiled"),
    ]:
        refused = run_cli(*base, "--prompt-lookup", "4", *extra)
        assert refused.returncode == 2
        lines = refused.stderr.strip().splitlines()
        assert lines[-1].startswith("error:") and said in lines[-1], refused.stderr
        assert "Traceback" not in refused.stderr


def test_the_generate_tab_runs_prompt_lookup(qtbot, window):
    from core.runtime.generation import GenerationSummary

    panel = window.generate_panel
    controls = panel.controls
    controls.temperature.setValue(0.8)
    controls.lookup.setValue(5)
    # greedy and not with beams: the boxes that would contradict it are off
    assert not controls.temperature.isEnabled() and not controls.beams.isEnabled()
    controls.prompt.setPlainText("abc abc abc abc")
    controls.chat.setChecked(False)
    controls.max_tokens.setValue(16)
    received = []
    window.runner.event.connect(received.append)
    window.tabs.setCurrentWidget(panel)
    with qtbot.waitSignal(window.runner.finished, timeout=60_000):
        panel.generate_button.click()

    summary = received[-1]
    assert isinstance(summary, GenerationSummary) and summary.lookup["draft_tokens"] == 5
    ids = window.loaded.tokenizer("abc abc abc abc", return_tensors="pt").input_ids
    from core.runtime.torch_runner import stop_token_ids

    model, tokenizer = window.loaded.model, window.loaded.tokenizer
    plain = _plain(model, ids, 16, stop_token_ids(model, tokenizer))
    assert summary.text == window.loaded.tokenizer.decode(plain, skip_special_tokens=True)
    assert "prompt lookup:" in panel.speed.text()
    controls.lookup.setValue(0)
    assert controls.temperature.isEnabled() and controls.beams.isEnabled()


def test_draft_lengths_adapt_and_the_answer_is_the_models():
    """A stand-in model whose greedy pick depends on the position alone: the
    loop must give its sequence exactly, keep its cache length right, draft
    at most one token more than it kept after a rejection, and up to twice
    as many after a draft kept whole."""
    from core.runtime.prompt_lookup import lookup_loop

    prompt = [1, 2, 3, 4, 1, 2, 3, 4, 1, 2]
    answer = [3, 4, 1, 2, 3, 4, 1, 2, 9, 9, 1, 2, 3, 4, 1, 2, 3, 4, 1, 2, 5, 6]
    sequence = prompt + answer
    state = {"length": 0}
    steps_seen = []  # (draft length, draft tokens the model agreed with)

    def verify(ids, keep):
        fed, start = ids[0].tolist(), state["length"]
        state["length"] += len(fed)
        if start:
            draft = fed[1:]
            agreed = 0
            while agreed < len(draft) and draft[agreed] == sequence[start + 1 + agreed]:
                agreed += 1
            steps_seen.append((len(draft), agreed))
        logits = torch.zeros(1, keep, 10)
        for row in range(keep):
            logits[0, row, sequence[start + len(fed) - keep + row + 1]] = 1.0
        return logits

    def drop(positions):
        state["length"] -= positions

    counts = LookupCounts(8)
    steps = lookup_loop(
        verify, drop, torch.tensor([prompt]), len(answer), PromptLookup(8), counts, set(), None
    )
    assert [s.token_id for s in steps] == answer
    assert state["length"] == len(sequence) - 1  # every token fed but the last pick
    assert counts.drafted == sum(d for d, _ in steps_seen)
    assert counts.accepted == sum(a for _, a in steps_seen)
    limit = 8
    for drafted, agreed in steps_seen:
        assert drafted <= limit
        if drafted:
            limit = min(8, 2 * limit) if agreed == drafted else agreed + 1
    rejected = [i for i, (d, a) in enumerate(steps_seen) if 0 < a < d]
    assert rejected and steps_seen[rejected[0] + 1][0] <= steps_seen[rejected[0]][1] + 1
