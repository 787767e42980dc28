"""transformers' LOAD REPORT, held back until the load is accepted.

transformers logs a multi-line table of mismatched, missing or unexpected
weights (a warning on ``transformers.modeling_utils``) and then, for
mismatched shapes, raises. The workbench refuses such a folder in one line
of its own, so the table is held while loading and shown only for a model
that is then used (a stray tensor it keeps warning about, say).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

LOGGER = "transformers.modeling_utils"
MARK = "LOAD REPORT"


@contextmanager
def load_report_held() -> Iterator[list[logging.LogRecord]]:
    """Within the block, the report's records are kept in the yielded list
    instead of being shown; ``show_load_report`` shows them afterwards."""
    logger = logging.getLogger(LOGGER)
    held: list[logging.LogRecord] = []

    def hold(record: logging.LogRecord) -> bool:
        if MARK in str(record.msg):
            held.append(record)
            return False
        return True

    logger.addFilter(hold)
    try:
        yield held
    finally:
        logger.removeFilter(hold)


def show_load_report(held: list[logging.LogRecord]) -> None:
    """Log what ``load_report_held`` kept, as transformers would have."""
    logger = logging.getLogger(LOGGER)
    for record in held:
        logger.handle(record)
