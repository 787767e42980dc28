"""What a new search takes from the run store instead of measuring again:
a record of the same model, recipe and runtime measured under the same
protocol settings. Records the search measures carry the settings' key in
their artifact (``protocol_settings``); a record measured otherwise (the
Run button, `workbench compress`) is reused when its protocol lines (bench
and evaluation) and calibration equal those of a keyed record of the same
model, which shows what those settings print."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, is_dataclass

SETTINGS_KEY = "protocol_settings"


def settings_key(settings, threads: int | None) -> str:
    """A short stable hash of the experiment settings and the thread count
    (speed depends on it): the same settings, the same key."""

    def plain(value):
        return asdict(value) if is_dataclass(value) else str(value)

    data = {"settings": asdict(settings), "threads": threads}
    text = json.dumps(data, sort_keys=True, default=plain)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _protocol(record) -> tuple:
    """How a record was measured: protocol lines, device and threads."""
    return (record.bench_protocol, record.eval_protocol, record.device, record.threads)


def _calibration(record) -> dict | None:
    return record.artifact.get("calibration")


class MeasuredRuns:
    """The store's records of one model (of these files, where runs store
    their digest), looked up by recipe and runtime."""

    def __init__(self, records, model: str, key: str, files_digest: str = "") -> None:
        from core.models.source_identity import same_files

        self.key = key
        self.records = [
            r for r in records if r.model == model and same_files(r.artifact, files_digest)
        ]
        keyed = [r for r in self.records if r.artifact.get(SETTINGS_KEY) == key]
        # The protocol lines these settings print, learnt from a keyed record.
        self.protocols = {_protocol(r) for r in keyed}

    def learn(self, record) -> None:
        """A record just measured under these settings shows their protocol lines."""
        self.protocols.add(_protocol(record))

    def find(self, recipe_dict: dict, runtime: str, calibration: dict | None):
        """The newest matching record, or None."""
        for record in reversed(self.records):
            if record.recipe != recipe_dict or record.backend != runtime:
                continue
            if record.artifact.get(SETTINGS_KEY) == self.key:
                return record
            if _protocol(record) in self.protocols and (_calibration(record) == calibration):
                return record
        return None
