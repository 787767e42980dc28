"""Beam search as the generate job streams it: what can honestly be shown
while it runs (each step's time and the beam leading at that moment, which
may still lose), then the answer and its timings in the GenerationSummary.

No token is final before the search ends, so no ``TextToken`` is yielded:
a token event would claim an answer that may be overtaken.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from core.errors import UnsupportedModelError
from core.progress import CancelToken
from core.runtime.runners import COMPILED_RUNNER, is_onnx_runtime

ONNX_REFUSAL = (
    "beam search runs on PyTorch (eager or compiled): the ONNX graph's batch is "
    "fixed at 1, so its cache cannot hold a row per beam"
)


@dataclass(frozen=True)
class BeamProgress:
    """One step of the search (step 0 includes the prompt)."""

    index: int
    leading_text: str  # the best running beam now; the answer may be another
    finished: int  # hypotheses finished so far (at most the beam count)
    elapsed_s: float
    step_s: float  # all beams' forward, the selection and the cache reorder


def beam_steps_function(model, runner: str):
    """The runner's ``beam_steps``; ONNX Runtime is refused in one line."""
    if is_onnx_runtime(model):
        raise UnsupportedModelError(ONNX_REFUSAL)
    if runner == COMPILED_RUNNER:
        from core.runtime.compiled_runner import beam_steps

        return beam_steps
    from core.runtime.torch_runner import beam_steps

    return beam_steps


def stream_beam_search(
    loaded,
    input_ids,
    room: int,
    max_new_tokens: int,
    stop_ids: set[int],
    settings,  # core.runtime.beam_search.BeamSearch
    cancel: CancelToken,
) -> Iterator[object]:
    """Yield a BeamProgress per step, then one GenerationSummary whose
    timings are per search step (``num_beams`` says so)."""
    from core.runtime.beam_search import BeamResult
    from core.runtime.generation import GenerationSummary, measured_on

    beam_steps = beam_steps_function(loaded.model, loaded.runner)
    compile_s = None
    if loaded.runner == COMPILED_RUNNER:
        from core.runtime.compiled_runner import compile_decode

        needed = int(input_ids.shape[1]) + max_new_tokens
        compile_s = compile_decode(loaded.model, needed, settings.num_beams)
    tokenizer = loaded.tokenizer
    steps = []  # core.runtime.beam_search.BeamStep
    result = None
    for event in beam_steps(loaded.model, input_ids, max_new_tokens, settings, stop_ids, cancel):
        if isinstance(event, BeamResult):
            result = event
            continue
        steps.append(event)
        text = tokenizer.decode(list(event.leading_ids), skip_special_tokens=True)
        yield BeamProgress(event.index, text, event.finished, event.elapsed_s, event.step_s)
    ids = list(result.token_ids)
    if result.cancelled:
        reason = "cancelled"
    elif ids and ids[-1] in stop_ids:
        reason = "stop token"
    elif len(ids) == room:
        reason = "context full"
    else:
        reason = "length"
    decode_s = sum(s.step_s for s in steps[1:])
    yield GenerationSummary(
        prompt_tokens=int(input_ids.shape[1]),
        new_tokens=len(ids),
        text=tokenizer.decode(ids, skip_special_tokens=True),
        prefill_ms=steps[0].step_s * 1e3 if steps else 0.0,
        decode_ms_per_token=decode_s / len(steps[1:]) * 1e3 if steps[1:] else None,
        tokens_per_s=len(steps[1:]) / decode_s if decode_s > 0 else None,
        stop_reason=reason,
        compile_s=compile_s,
        num_beams=settings.num_beams,
        search_steps=len(steps),
        measured_on=measured_on(loaded),
    )
