import pytest
import torch

from core.models.loading import load_model
from core.progress import CancelToken
from core.runtime.generation import GenerationSummary, TextToken, stream_generation
from core.runtime.sampling import Sampling
from core.runtime.torch_runner import generate_steps


@pytest.fixture
def loaded(tiny_dir):
    return load_model(str(tiny_dir), device="cpu")


def test_greedy_matches_transformers_generate(loaded):
    ids = loaded.tokenizer("def print(value):", return_tensors="pt").input_ids
    expected = loaded.model.generate(
        ids, max_new_tokens=20, do_sample=False, eos_token_id=None, pad_token_id=0
    )[0, ids.shape[1] :].tolist()
    ours = [s.token_id for s in generate_steps(loaded.model, ids, 20)]
    assert ours == expected


def test_kv_cache_gives_same_logits_as_full_recompute(loaded):
    ids = loaded.tokenizer("for each item in the list", return_tensors="pt").input_ids
    tokens = [s.token_id for s in generate_steps(loaded.model, ids, 8)]
    full = torch.cat([ids, torch.tensor([tokens[:-1]])], dim=1)
    with torch.no_grad():
        argmax_full = loaded.model(full).logits[0, ids.shape[1] - 1 :].argmax(-1).tolist()
    assert argmax_full == tokens


def test_sampling_is_reproducible_with_a_seed_and_differs_from_greedy(loaded):
    ids = loaded.tokenizer("The", return_tensors="pt").input_ids
    sampling = Sampling(temperature=1.5, top_k=50, seed=7)
    a = [s.token_id for s in generate_steps(loaded.model, ids, 30, sampling)]
    b = [s.token_id for s in generate_steps(loaded.model, ids, 30, sampling)]
    greedy = [s.token_id for s in generate_steps(loaded.model, ids, 30)]
    assert a == b
    assert a != greedy


def test_top_k_one_is_greedy(loaded):
    ids = loaded.tokenizer("The", return_tensors="pt").input_ids
    sampled = [s.token_id for s in generate_steps(loaded.model, ids, 15, Sampling(1.0, top_k=1))]
    greedy = [s.token_id for s in generate_steps(loaded.model, ids, 15)]
    assert sampled == greedy


def test_streamed_text_equals_decoded_output(loaded):
    events = list(stream_generation(loaded, "import os", max_new_tokens=25))
    tokens = [e for e in events if isinstance(e, TextToken)]
    summary = events[-1]
    assert isinstance(summary, GenerationSummary)
    assert summary.new_tokens == len(tokens) == 25
    decoded = loaded.tokenizer.decode([t.token_id for t in tokens], skip_special_tokens=True)
    assert "".join(t.text for t in tokens) == summary.text == decoded
    assert all(b.elapsed_s >= a.elapsed_s for a, b in zip(tokens, tokens[1:], strict=False))
    assert all(t.step_s > 0 for t in tokens)
    assert summary.tokens_per_s > 0 and summary.stop_reason == "length"


def test_stops_at_a_stop_token(loaded):
    ids = loaded.tokenizer("x", return_tensors="pt").input_ids
    first = next(iter(generate_steps(loaded.model, ids, 1))).token_id
    steps = list(generate_steps(loaded.model, ids, 10, stop_ids={first}))
    assert len(steps) == 1


def test_cancel_stops_between_tokens(loaded):
    cancel = CancelToken()
    seen = []
    for event in stream_generation(loaded, "hello", max_new_tokens=200, cancel=cancel):
        seen.append(event)
        if len(seen) == 3:
            cancel.cancel()
    assert isinstance(seen[-1], GenerationSummary)
    assert seen[-1].stop_reason == "cancelled"
    assert seen[-1].new_tokens == 3


def test_bad_sampling_settings_are_refused():
    with pytest.raises(ValueError):
        Sampling(temperature=-1)
    with pytest.raises(ValueError):
        Sampling(top_p=0)


def test_generation_stops_when_the_context_is_full(tiny_gpt2_dir):
    loaded = load_model(str(tiny_gpt2_dir))  # 256 positions
    events = list(stream_generation(loaded, "x " * 50, max_new_tokens=1000))
    summary = events[-1]
    assert summary.stop_reason == "context full"
    assert summary.prompt_tokens + summary.new_tokens == 256
