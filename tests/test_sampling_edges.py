"""Sampling and prompts at their edges (found by an adversarial sweep): a
temperature that underflows float32 samples the best token instead of
failing on NaN probabilities, a temperature that is not a number is refused,
and a prompt that is not text (bytes that were not UTF-8, a lone surrogate)
is refused in one line before the tokenizer sees it."""

from __future__ import annotations

import pytest
import torch

from core.runtime.generation import encode_prompt
from core.runtime.sampling import Sampling, make_generator, pick_next


@pytest.mark.parametrize("temperature", [1e-300, 1e-45, 1e-6])
def test_a_tiny_temperature_picks_the_best_token(temperature):
    logits = torch.randn(3, 50, generator=torch.Generator().manual_seed(0)) * 30
    sampling = Sampling(temperature=temperature, seed=1)
    picked = pick_next(logits, sampling, make_generator(sampling, torch.device("cpu")))
    assert torch.equal(picked, logits.argmax(-1, keepdim=True))


@pytest.mark.parametrize("top_p", [1e-300, 1e-50, 1e-6])
def test_a_tiny_top_p_keeps_the_best_token(top_p):
    """Below float32's smallest number top_p compared as 0 and masked every
    token: NaN probabilities, a traceback in generate and a 500 in serve."""
    logits = torch.randn(3, 50, generator=torch.Generator().manual_seed(0)) * 3
    sampling = Sampling(temperature=1.0, top_p=top_p, seed=1)
    picked = pick_next(logits, sampling, make_generator(sampling, torch.device("cpu")))
    assert torch.equal(picked, logits.argmax(-1, keepdim=True))


@pytest.mark.parametrize("temperature", [float("nan"), float("inf"), -1.0])
def test_a_temperature_that_is_not_a_number_at_least_0_is_refused(temperature):
    with pytest.raises(ValueError, match="temperature"):
        Sampling(temperature=temperature)


@pytest.mark.parametrize("prompt", ["\udcff\udcfe", "ok \ud800"])
def test_a_prompt_that_is_not_text_is_refused_in_one_line(tiny_llama_dir, prompt):
    from core.models.loading import load_model

    loaded = load_model(str(tiny_llama_dir), device="cpu")
    for chat in (False, True):
        with pytest.raises(ValueError, match="not valid text") as err:
            encode_prompt(loaded, prompt, chat)
        assert "\n" not in str(err.value)
