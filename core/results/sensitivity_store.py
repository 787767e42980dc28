"""Sensitivity maps, kept cell by cell next to the run store.

``sensitivity.jsonl`` in the user's data directory (beside ``runs.jsonl``):
one JSON object per measured cell, appended and flushed the moment the cell
exists, so a cancel, a crash or a kill keeps every cell measured before it.
Each line carries its key: a hash of the model's identity, the probe pass
and the scoring protocol, with those three spelled out beside it. A later
run with the same key reads the cells back and measures only the rest; the
window shows the stored map when the model is loaded again.

Measuring a map afresh appends a ``reset`` line for its key: cells before it
are no longer read, and no line is ever rewritten or deleted. A damaged
last line (a kill mid-write) is skipped on reading.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from pathlib import Path

from core.results.jsonl_append import append_json_line, require_regular_file
from core.results.store import data_dir


def cell_key(identity: dict, probe: dict, protocol: dict) -> str:
    text = json.dumps([identity, probe, protocol], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


class SensitivityStore:
    def __init__(self, path: Path | None = None) -> None:
        self.path = path or data_dir() / "sensitivity.jsonl"

    def append(self, key: str, identity: dict, probe: dict, protocol: dict, cell: dict) -> None:
        self._write(
            {
                "key": key,
                "model": identity,
                "probe": probe,
                "protocol": protocol,
                "cell": cell,
                "created": time.time(),
            }
        )

    def reset(self, key: str) -> None:
        """Forget this key's cells (by a line saying so: nothing is deleted)."""
        self._write({"key": key, "reset": True, "created": time.time()})

    def cells(self, key: str) -> dict[tuple[int, str], dict]:
        """(layer, part) -> the latest stored cell of ``key`` since its last reset."""
        found: dict[tuple[int, str], dict] = {}
        for line in self._lines():
            if line.get("key") != key:
                continue
            if line.get("reset"):
                found.clear()
                continue
            cell = line.get("cell")
            try:
                layer, part = cell["layer"], cell["part"]
                scores = {"mean_kl": float(cell["mean_kl"]), "ppl_ratio": float(cell["ppl_ratio"])}
            except (TypeError, KeyError, ValueError, OverflowError):
                continue  # a line of another shape: not a cell we can show
            if type(layer) is not int or layer < 0 or not isinstance(part, str):
                continue
            if not all(math.isfinite(v) for v in scores.values()):
                continue  # NaN or a number past float's range: nothing to colour a cell by
            found[(layer, part)] = scores
        return found

    def _write(self, line: dict) -> None:
        append_json_line(self.path, line)

    def _lines(self):
        if not self.path.exists():
            return
        require_regular_file(self.path)
        for text in self.path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                line = json.loads(text)
            except ValueError:
                continue  # a line cut short by a kill: skip it, keep the rest
            if isinstance(line, dict):
                yield line
