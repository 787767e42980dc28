"""Every configuration measured, persisted as it is measured.

One JSON object per line in ``runs.jsonl`` in the user's data directory
(``$WORKBENCH_DATA_DIR`` overrides it). Each record is appended and flushed
to disk the moment it exists, so a crash or a kill loses at most the run in
progress; a damaged last line (a kill mid-write) is skipped on reading.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class RunRecord:
    """One configuration of one model, with how each number was measured.

    A causal LM fills the prefill/decode and perplexity fields; a sequence
    classifier (``task == "sequence-classification"``) leaves them None and
    fills the latency and accuracy fields below. Fields added later have
    defaults, so older ``runs.jsonl`` lines still load.
    """

    model: str
    recipe: dict  # core.passes.recipe.Recipe.to_dict()
    recipe_name: str
    bytes: int
    bytes_by_component: dict[str, int]
    prefill_ms: float | None
    decode_ms_per_token: float | None
    tokens_per_s: float | None
    ppl: float | None
    # Half the width of perplexity's 95% interval. The interval is exp() of
    # one on the mean NLL, so it is not symmetric about ``ppl``: its ends are
    # ``ppl_ci95_low``/``ppl_ci95_high`` (ppl +- ppl_ci95 is not the interval).
    ppl_ci95: float | None
    top1_agreement: float | None
    mean_kl: float | None
    device: str
    threads: int
    bench_protocol: str
    eval_protocol: str
    notes: list[str] = field(default_factory=list)
    backend: str = "torch"  # a key of core.jobs.experiment.BACKENDS
    created: float = field(default_factory=time.time)
    run_id: str = ""
    task: str = "causal-lm"
    # Sequence classifier: batch-1 latency of one fixed input (ms) and
    # sentiment accuracy with its Wilson 95% interval (not symmetric, so both
    # ends), over ``examples`` reviews; agreement: same label as the original.
    latency_ms: float | None = None
    latency_ms_p10: float | None = None
    latency_ms_p90: float | None = None
    examples_per_s: float | None = None
    accuracy: float | None = None
    accuracy_ci95_low: float | None = None
    accuracy_ci95_high: float | None = None
    examples: int | None = None
    agreement: float | None = None
    # Trust (issue 12). ``broken``: why this configuration collapsed (top-1
    # agreement < 0.5 or perplexity > 3x the original's on the same tokens),
    # empty when it did not; ``ppl_ratio``: the paired perplexity ratio to the
    # original on the same tokens. ``machine_load``: other processes' load
    # seen before and after the timed runs; ``machine_busy`` names it when it
    # was high enough to disturb the timings (empty: quiet). ``artifact``: what
    # rebuilds exactly what was measured (recipe, runtime, trained weights and
    # their sha256, ONNX graph).
    broken: str = ""
    ppl_ratio: float | None = None
    machine_load: dict = field(default_factory=dict)
    machine_busy: str = ""
    artifact: dict = field(default_factory=dict)
    ppl_ci95_low: float | None = None
    ppl_ci95_high: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def is_original(self) -> bool:
        """The loaded model as it is, run by PyTorch: what everything is compared with."""
        return not self.recipe.get("passes") and self.backend == "torch"


def data_dir() -> Path:
    override = os.environ.get("WORKBENCH_DATA_DIR")
    if override:
        return Path(override)
    import platformdirs

    return Path(platformdirs.user_data_dir("compression-workbench"))


class ResultsStore:
    def __init__(self, path: Path | None = None) -> None:
        self.path = path or data_dir() / "runs.jsonl"

    def append(self, record: RunRecord) -> RunRecord:
        if not record.run_id:
            record = RunRecord(**{**record.to_dict(), "run_id": f"{record.created:.6f}"})
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record.to_dict()) + "\n")
            f.flush()
            os.fsync(f.fileno())
        return record

    def load(self) -> list[RunRecord]:
        if not self.path.exists():
            return []
        records = []
        known = set(RunRecord.__dataclass_fields__)
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                data = json.loads(line)
                records.append(RunRecord(**{k: v for k, v in data.items() if k in known}))
            except (ValueError, TypeError):
                continue  # a line cut short by a kill: skip it, keep the rest
        return records
