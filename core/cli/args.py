"""Argument types for the command line. Every count, size and number is
checked as argparse reads it, so bad input is refused in one line before any
model is loaded; and argparse's own refusals become one line too."""

from __future__ import annotations

import argparse
import math
import re

from core.message_text import one_line, shown

MAX_COUNT = 1_000_000  # tokens, repeats, windows: far past any real run, far below overflow
MAX_SEED = 2**63 - 1  # torch.manual_seed takes a 64-bit integer


class ArgumentsError(Exception):
    """argparse refused the command line; main() prints it as one line."""


class OneLineParser(argparse.ArgumentParser):
    """argparse whose refusals are one line, not usage plus error (usage is one
    --help away). Subparsers inherit the class."""

    def error(self, message: str):
        raise ArgumentsError(f"{one_line(message)} (see {self.prog} --help)")


def whole(minimum: int = 0, maximum: int = MAX_COUNT):
    """An integer in [minimum, maximum]: "1.5", "true", "1e3" and "nan" are refused."""

    def parse(text: str) -> int:
        try:
            value = int(text, 10)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a whole number, got {shown(text)}") from None
        if not minimum <= value <= maximum:
            raise argparse.ArgumentTypeError(
                f"must be between {minimum} and {maximum:,}, got {shown(value)}"
            )
        return value

    return parse


def number(minimum: float = 0.0, maximum: float = math.inf, *, above_minimum: bool = False):
    """A finite float in [minimum, maximum] (or (minimum, maximum] with
    ``above_minimum``): "nan", "inf" and "abc" are refused."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a number, got {shown(text)}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be a finite number, got {shown(text)}")
        too_low = value <= minimum if above_minimum else value < minimum
        if too_low or value > maximum:
            low = "(" if above_minimum else "["
            high = f"{maximum:g}]" if math.isfinite(maximum) else "inf)"
            raise argparse.ArgumentTypeError(f"must be in {low}{minimum:g}, {high}, got {value:g}")
        return value

    return parse


_DEVICE = re.compile(r"auto|cpu|cuda(:\d{1,3})?")


def device(text: str) -> str:
    """auto, cpu, cuda or cuda:N; anything else would reach torch.device() and fail there."""
    if not _DEVICE.fullmatch(text):
        raise argparse.ArgumentTypeError(f"must be auto, cpu, cuda or cuda:N, got {shown(text)}")
    return text


def model_source(text: str) -> str:
    """A model id or folder: not empty (the loader would take that for the
    default model) and without NUL (no path can hold one)."""
    if not text.strip() or "\0" in text:
        raise argparse.ArgumentTypeError(f"must name a model or a folder, got {shown(text)}")
    from core.models.source_identity import canonical_source

    return canonical_source(text)  # a folder by its absolute path, as runs store it


def thread_count(text: str) -> int:
    """1 up to the CPUs this process may use: more threads than CPUs only
    contend, and a run timed so says nothing about the machine (a sweep saw
    --threads 4096 accepted on 2 CPUs)."""
    from core.runtime.device import cpu_count

    usable = cpu_count()
    value = whole(1, 4096)(text)
    if value > usable:
        raise argparse.ArgumentTypeError(
            f"must be at most {usable:,}, the CPUs this process may use, got {value:,}"
        )
    return value


def threads(text: str) -> int | str:
    """A thread count, or ``auto``: chosen by a short measured sweep
    (core.jobs.threads), remembered per machine, model and runtime."""
    if text.strip().lower() == "auto":
        return "auto"
    return thread_count(text)


seed = whole(0, MAX_SEED)
