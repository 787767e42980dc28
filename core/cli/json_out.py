"""What ``--json`` prints: strict JSON (core/strict_json.py), indented."""

from __future__ import annotations

from core.strict_json import strict_dumps


def json_text(data) -> str:
    return strict_dumps(data, indent=2)
