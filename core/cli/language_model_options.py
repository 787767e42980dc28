"""Options that set a language model's protocol (text, windows, prompt and
decode lengths, calibration windows). A classifier is scored and timed by its
own protocol, so given for one they were silently ignored, and a protocol
line named what was not asked for (a sweep asked for the dev split and got
the test split's accuracy). Refused in one line once the model's kind is
known, before any work."""

from __future__ import annotations

import argparse

KEY = "language_model_options"


def mark(parser: argparse.ArgumentParser, dests: tuple[str, ...]) -> None:
    """Remember ``dests``' defaults, so that a value given can be told apart."""
    parser.set_defaults(**{KEY: {dest: parser.get_default(dest) for dest in dests}})


def refuse_for_classifier(args, loaded, scored: str) -> None:
    """One line naming the marked options given, when ``loaded`` is a
    classifier (``scored``: how a classifier is measured instead)."""
    if not loaded.is_classifier:
        return
    defaults = getattr(args, KEY, {})
    given = [f"--{d.replace('_', '-')}" for d, v in defaults.items() if getattr(args, d) != v]
    if given:
        them = "them" if len(given) > 1 else "it"
        raise ValueError(
            f"{', '.join(given)}: a language model's protocol; a classifier is {scored}, "
            f"so leave {them} out"
        )
