"""Strict JSON, which has no NaN or Infinity.

Python's ``json.dumps`` writes a NaN perplexity (a model with NaN weights) as
the bare word ``NaN``, which ``jq``, most parsers and our own store readers
refuse: a store line holding it was written, then skipped on every read (the
run lost). Such a number is written as null ("not measured"), and the record
says in words what was not a number (its ``broken`` flag, the report).
"""

from __future__ import annotations

import json
import math


def finite_or_null(value):
    """``value`` with every float that is not finite replaced by None."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: finite_or_null(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [finite_or_null(item) for item in value]
    return value


def strict_dumps(data, **options) -> str:
    return json.dumps(finite_or_null(data), allow_nan=False, **options)
