"""Perplexity on fixed windows of an evaluation text, with a 95% interval.

The text: a split of a bundled source (``core.data.texts``): the report
split for reported numbers, the dev split for choosing defaults; or a file
of the user's own (``core.data.own_text``), scored whole.

The protocol: the text's documents are each tokenized
alone and joined by the tokens of a blank line into one stream. Windows of
``context_tokens`` start on a grid of ``stride`` tokens; each window scores
only its last ``stride`` tokens, so every scored token sees at least
``context_tokens - stride`` tokens of context and no token is scored twice.
``full_windows`` windows are spread evenly over the whole stream (all of them
when the stream is shorter); the quick protocol takes ``quick_windows`` of
those, evenly spaced, so a quick number estimates the full one. Where the
tokenizer adds a BOS token (``core.data.tokens``), each window's first token
is replaced by BOS: the window keeps its length and its scored tokens.
The protocol line (``describe``) names what was actually scored: windows,
tokens, the text (split, or file name and sha256) and BOS.

Perplexity = exp(mean negative log-likelihood per scored token). Every window
scores the same number of tokens, so that mean is the mean of the per-window
means, and the 95% interval is mean +- 1.96 standard errors of the window
means, mapped through exp (so it is asymmetric; ``ci95_halfwidth`` is half
its width). Windows are spread out to keep them close to independent; with
few windows the normal approximation is rough, which is why the interval is
printed beside every number.
"""

from __future__ import annotations

import inspect
import math
import statistics
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace

import torch

from core.data.gil_pieces import long_tensor
from core.data.texts import EVALUATION_SPLITS, NEWS, REPORT, SOURCES, split_texts
from core.data.tokens import bos_label, bos_to_prepend, document_stream, with_bos
from core.evaluate.intervals import mean_interval
from core.evaluate.protocol_text import TEXT_FOLLOWS
from core.progress import CancelToken

QUICK = "quick"
FULL = "full"


@dataclass(frozen=True)
class PerplexityProtocol:
    context_tokens: int = 512
    stride: int = 256  # window grid step = tokens scored per window (its last ones)
    quick_windows: int = 10
    full_windows: int = 200
    mode: str = QUICK  # "quick" or "full"
    source: str = NEWS  # the bundled text source whose split is scored
    split: str = REPORT  # "report": reported numbers; "dev": choosing defaults
    text_file: str = ""  # a user's UTF-8 or JSONL file, scored whole instead

    def __post_init__(self) -> None:
        if not 0 < self.stride <= self.context_tokens - 1:
            raise ValueError("need 0 < stride < context_tokens (a window needs some context)")
        if not 1 <= self.quick_windows <= self.full_windows:
            raise ValueError("need 1 <= quick_windows <= full_windows")
        if self.mode not in (QUICK, FULL):
            raise ValueError(f"mode must be {QUICK!r} or {FULL!r}")
        if self.source not in SOURCES:
            raise ValueError(f"unknown text source {self.source!r}")
        if self.split not in EVALUATION_SPLITS:
            raise ValueError(f"split must be one of {', '.join(EVALUATION_SPLITS)}")
        if self.text_file and self.split != REPORT:
            raise ValueError("a text file is scored whole: it has no dev split")

    @property
    def windows(self) -> int:
        """Windows this protocol asks for (fewer when the text is shorter)."""
        return self.quick_windows if self.mode == QUICK else self.full_windows

    def with_mode(self, mode: str) -> PerplexityProtocol:
        return replace(self, mode=mode)

    def text_label(self) -> str:
        """The text scored: a split of a bundled source, or the file and its hash."""
        if self.text_file:
            from core.data.own_text import read_text_file

            return read_text_file(self.text_file).label()
        return f"the {self.split} split of {SOURCES[self.source]}"

    def _which(self) -> str:
        """Which windows: N of the full protocol's are other tokens than N alone."""
        if self.mode == QUICK and self.quick_windows < self.full_windows:
            return f" (evenly spaced among the full protocol's {self.full_windows})"
        return ""

    def describe(self, windows: int | None = None, bos: str = "") -> str:
        """The protocol line. ``windows``: how many were actually scored (the
        text may hold fewer than asked); ``bos``: ``bos_label(tokenizer)``."""
        scored = self.windows if windows is None else windows
        count = f"{scored} windows of {self.context_tokens} tokens"
        if scored < self.windows:
            count += f" ({self.windows} asked; the text holds {scored})"
        return "; ".join(
            part
            for part in (
                f"{self.mode}: {count} at stride {self.stride}{self._which()}, the last "
                f"{self.stride} of each "
                f"scored ({scored * self.stride} tokens, each with >= "
                f"{self.context_tokens - self.stride}{TEXT_FOLLOWS}{self.text_label()}",
                bos,
                "95% CI from per-window mean NLL",
            )
            if part
        )


QUICK_PROTOCOL = PerplexityProtocol(mode=QUICK)
FULL_PROTOCOL = PerplexityProtocol(mode=FULL)


@dataclass(frozen=True)
class PerplexityPartial:
    windows_done: int
    windows_total: int
    tokens_scored: int
    ppl: float
    ci95_halfwidth: float | None  # None until two windows are done
    ci95_low: float | None = None  # the interval itself (asymmetric), None as above
    ci95_high: float | None = None


@dataclass(frozen=True)
class PerplexityResult:
    ppl: float
    ci95_halfwidth: float | None
    tokens_scored: int
    windows: int
    protocol: str
    seconds: float
    mean_nll: float  # nats per scored token
    ci95_low: float | None
    ci95_high: float | None


def token_stream(tokenizer, source: str = NEWS, split: str = REPORT) -> torch.Tensor:
    """A split of a bundled source as one token stream (documents joined by a blank line)."""
    return long_tensor(document_stream(tokenizer, split_texts(source, split)))


def protocol_stream(tokenizer, protocol: PerplexityProtocol) -> torch.Tensor:
    """The token stream of the text ``protocol`` scores."""
    if protocol.text_file:
        from core.data.own_text import read_text_file

        documents = read_text_file(protocol.text_file).documents
        return long_tensor(document_stream(tokenizer, documents))
    return token_stream(tokenizer, protocol.source, protocol.split)


def on_text(protocol: PerplexityProtocol, text: str | None) -> PerplexityProtocol:
    """``protocol`` scoring ``text``: a bundled source's name or a file's
    path (None: unchanged). A file is scored whole."""
    if not text:
        return protocol
    if text in SOURCES:
        return replace(protocol, source=text, text_file="")
    return replace(protocol, text_file=str(text), split=REPORT)


def spread(count: int, available: int) -> list[int]:
    """``count`` indices spread evenly over ``range(available)``, first and last included."""
    if count >= available:
        return list(range(available))
    if count == 1:
        return [0]
    return [round(i * (available - 1) / (count - 1)) for i in range(count)]


def perplexity_windows(tokenizer, protocol: PerplexityProtocol) -> list[torch.Tensor]:
    """The protocol's windows (1-D token-id tensors): the same for every model
    sharing ``tokenizer``; each starts with BOS where the tokenizer adds one."""
    stream = protocol_stream(tokenizer, protocol)
    starts = (stream.numel() - protocol.context_tokens) // protocol.stride + 1
    if starts < 1:
        raise ValueError(
            f"{protocol.text_label()} has {stream.numel()} tokens, fewer than one window "
            f"({protocol.context_tokens})"
        )
    full = spread(protocol.full_windows, starts)
    chosen = (
        full
        if protocol.mode == FULL
        else [full[i] for i in spread(protocol.quick_windows, len(full))]
    )
    bos = bos_to_prepend(tokenizer)
    return [
        with_bos(stream[s * protocol.stride : s * protocol.stride + protocol.context_tokens], bos)
        for s in chosen
    ]


def fitted_to_context(protocol: PerplexityProtocol, config) -> tuple[PerplexityProtocol, str]:
    """``protocol`` with windows no longer than the model's context, and a
    note saying so ("" when it already fits). The default protocol's
    512-token windows would fail on a model trained for fewer positions; a
    run on such a model then scores windows of its whole context, the
    stride keeping its share of the window, and says so. An explicitly asked
    window length is checked instead (``check_fits``)."""
    from core.runtime.generation import context_length

    limit = context_length(config)
    if protocol.context_tokens <= limit:
        return protocol, ""
    stride = max(1, min(limit - 1, protocol.stride * limit // protocol.context_tokens))
    fitted = replace(protocol, context_tokens=limit, stride=stride)
    note = (
        f"perplexity windows of {limit} tokens (stride {stride}), not "
        f"{protocol.context_tokens}: the model's context is {limit} tokens"
    )
    return fitted, note


def check_fits(model, protocol: PerplexityProtocol) -> None:
    from core.runtime.generation import context_length

    limit = context_length(model.config)
    if protocol.context_tokens > limit:
        raise ValueError(
            f"the protocol's {protocol.context_tokens}-token windows exceed the model's "
            f"context of {limit} tokens; choose a shorter context"
        )


def accepts_logits_to_keep(model) -> bool:
    return "logits_to_keep" in inspect.signature(model.forward).parameters


def window_nll(model, window: torch.Tensor, scored: int) -> float:
    """Mean negative log-likelihood (nats) of the last ``scored`` tokens of ``window``."""
    device = next(model.parameters()).device
    ids = window.to(device).unsqueeze(0)
    if accepts_logits_to_keep(model):  # skip the LM head where nothing is scored
        logits = model(input_ids=ids, logits_to_keep=scored + 1).logits[0, :-1]
    else:
        logits = model(input_ids=ids).logits[0, -scored - 1 : -1]
    return torch.nn.functional.cross_entropy(logits.float(), ids[0, -scored:]).item()


def _summary(nlls: list[float]) -> tuple[float, float, float | None, float | None]:
    mean = statistics.fmean(nlls)
    interval = mean_interval(nlls)
    if interval is None:
        return mean, math.exp(mean), None, None
    return mean, math.exp(mean), math.exp(interval.low), math.exp(interval.high)


@torch.inference_mode()
def evaluate_perplexity(
    model,
    tokenizer,
    protocol: PerplexityProtocol = QUICK_PROTOCOL,
    cancel: CancelToken | None = None,
    windows: list[torch.Tensor] | None = None,
) -> Iterator[PerplexityPartial | PerplexityResult]:
    """Yield a PerplexityPartial after each window, then the PerplexityResult.

    ``windows`` (from ``perplexity_windows``) can be passed to reuse them
    across models; by default they are built here.
    """
    cancel = cancel or CancelToken()
    start = time.perf_counter()
    check_fits(model, protocol)
    if windows is None:
        windows = perplexity_windows(tokenizer, protocol)
    nlls: list[float] = []
    for window in windows:
        cancel.raise_if_cancelled()
        nlls.append(window_nll(model, window, protocol.stride))
        _, ppl, low, high = _summary(nlls)
        yield PerplexityPartial(
            windows_done=len(nlls),
            windows_total=len(windows),
            tokens_scored=len(nlls) * protocol.stride,
            ppl=ppl,
            ci95_halfwidth=None if low is None else (high - low) / 2,
            ci95_low=low,
            ci95_high=high,
        )
    mean, ppl, low, high = _summary(nlls)
    yield PerplexityResult(
        ppl=ppl,
        ci95_halfwidth=None if low is None else (high - low) / 2,
        tokens_scored=len(nlls) * protocol.stride,
        windows=len(nlls),
        protocol=protocol.describe(len(nlls), bos_label(tokenizer)),
        seconds=time.perf_counter() - start,
        mean_nll=mean,
        ci95_low=low,
        ci95_high=high,
    )


def compute_perplexity(
    model, tokenizer, protocol: PerplexityProtocol = QUICK_PROTOCOL, cancel=None, windows=None
) -> PerplexityResult:
    """``evaluate_perplexity`` without the partial results."""
    result = None
    for event in evaluate_perplexity(model, tokenizer, protocol, cancel, windows):
        result = event
    assert isinstance(result, PerplexityResult)
    return result
