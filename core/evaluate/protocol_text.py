"""The text a stored perplexity protocol line names. Records keep the line
(``PerplexityProtocol.describe``), not the protocol, so a table column reads
the text back from it; no torch here, the window imports it at start."""

from __future__ import annotations

# What stands between the windows' description and the text's label.
TEXT_FOLLOWS = " tokens of context), over "


def text_of(description: str) -> str:
    """The text ``description`` scored, short: "report split of news
    articles", a file's name; "" for a line of another kind (a classifier's)."""
    _, found, rest = description.partition(TEXT_FOLLOWS)
    if not found:
        return ""
    # every label ends in its source or its file's hash in parentheses
    label, paren, _ = rest.partition(" (")
    return (label if paren else rest.split("; ")[0]).removeprefix("the ")
