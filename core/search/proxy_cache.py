"""Proxy scores already computed, kept beside the run store
(``search_proxies.jsonl``), so a new search over the same model re-scores
nothing it scored before. One JSON line per score, appended and flushed as
it is computed; a damaged line (a kill mid-write) is skipped. The key holds
the model, the recipe and everything the score depends on (dev windows,
calibration, PROXY_VERSION); failures are not kept (they may be transient)."""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict
from pathlib import Path

from core.results.jsonl_append import append_json_line
from core.search.proxy import PROXY_VERSION, ProxyScore

FILE_NAME = "search_proxies.jsonl"


def proxy_key(model_identity: dict, spec, recipe_dict: dict) -> str:
    data = {
        "version": PROXY_VERSION,
        "model": model_identity,
        "spec": spec.cache_part(),
        "recipe": recipe_dict,
    }
    text = json.dumps(data, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


class ProxyCache:
    def __init__(self, path: Path | None) -> None:
        self.path = path  # None: nothing kept (this search only)
        self._scores: dict[str, ProxyScore] = {}
        if path is not None and path.exists():
            for line in path.read_text(encoding="utf-8").splitlines():
                try:
                    data = json.loads(line)
                    self._scores[data["key"]] = ProxyScore(**data["score"])
                except (ValueError, TypeError, KeyError):
                    continue

    def get(self, key: str) -> ProxyScore | None:
        return self._scores.get(key)

    def put(self, key: str, score: ProxyScore) -> None:
        self._scores[key] = score
        if self.path is None:
            return
        values = asdict(score)
        if not all(math.isfinite(v) for v in values.values()):
            return  # a score that is not a number is not kept: it is scored again
        # whole lines or none (a kill or a full disk mid-write merged the next
        # score into a damaged line), and one writer at a time
        append_json_line(self.path, {"key": key, "score": values})
