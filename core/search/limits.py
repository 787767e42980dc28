"""What the user asks of a search: limits every answer must meet, and the
one objective the best answer optimises. Checked as data before any model
loads (one line each), then against measured RunRecords."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields


@dataclass(frozen=True)
class Objective:
    key: str
    title: str
    higher_is_better: bool = False

    def value(self, record) -> float | None:
        """The number this objective ranks ``record`` by (None: not measured)."""
        if self.key == "bytes":
            return float(record.bytes)
        if self.key == "speed":  # a causal LM's decode step, or a classifier's latency
            for name in ("decode_ms_per_token", "latency_ms"):
                if record.metric(name) is not None:
                    return record.metric(name)
            return None
        if self.key == "kl":
            return record.metric("mean_kl")
        return record.metric(self.key)

    def rank(self, record) -> tuple:
        """Sort key: best first; unmeasured last; ties go to the smaller model."""
        value = self.value(record)
        if value is None:
            return (1, 0.0, record.bytes)
        return (0, -value if self.higher_is_better else value, record.bytes)

    def metric_names(self) -> tuple[str, ...]:
        """Metrics a model kind must carry for this objective (any one of them)."""
        return {
            "ppl": ("ppl",),
            "kl": ("mean_kl",),
            "accuracy": ("accuracy",),
            "speed": ("decode_ms_per_token", "latency_ms"),
            "bytes": (),
        }[self.key]


OBJECTIVES = {
    o.key: o
    for o in (
        Objective("ppl", "smallest perplexity increase"),
        Objective("kl", "smallest KL divergence to the original"),
        Objective("bytes", "smallest size"),
        Objective("speed", "fastest on this machine"),
        Objective("accuracy", "highest accuracy", higher_is_better=True),
    )
}


def objective(key: str) -> Objective:
    if key not in OBJECTIVES:
        raise ValueError(f"unknown objective {key!r}; one of {', '.join(OBJECTIVES)}")
    return OBJECTIVES[key]


# The metric each limit reads (a model kind without it cannot take the limit).
_LIMIT_METRICS = {
    "max_decode_ms": "decode_ms_per_token",
    "min_tokens_per_s": "tokens_per_s",
    "max_kl": "mean_kl",
    "max_ppl_increase_pct": "ppl",
    "min_accuracy": "accuracy",
}


@dataclass(frozen=True)
class Limits:
    """Every limit is optional (None: no limit). Sizes are bytes as stored;
    the ratio is of the original model's bytes; the perplexity increase is
    against the original measured with the same protocol."""

    max_bytes: int | None = None
    max_bytes_ratio: float | None = None
    max_decode_ms: float | None = None
    min_tokens_per_s: float | None = None
    max_kl: float | None = None
    max_ppl_increase_pct: float | None = None
    min_accuracy: float | None = None

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"{f.name} must be a number, got {value!r}")
            if not math.isfinite(value) or value <= 0 and f.name != "max_ppl_increase_pct":
                raise ValueError(f"{f.name} must be a finite number above 0, got {value!r}")
        if self.max_ppl_increase_pct is not None and self.max_ppl_increase_pct < 0:
            raise ValueError(f"max_ppl_increase_pct must be >= 0, got {self.max_ppl_increase_pct}")
        if self.min_accuracy is not None and self.min_accuracy > 1:
            raise ValueError(f"min_accuracy is a fraction (0-1], got {self.min_accuracy}")
        if self.max_bytes is not None and not isinstance(self.max_bytes, int):
            raise ValueError(f"max_bytes must be a whole number of bytes, got {self.max_bytes!r}")

    @property
    def needs_speed(self) -> bool:
        return self.max_decode_ms is not None or self.min_tokens_per_s is not None

    def byte_limit(self, original_bytes: int) -> int | None:
        """The tighter of the two size limits, in bytes (None: no size limit)."""
        chosen = [self.max_bytes] if self.max_bytes is not None else []
        if self.max_bytes_ratio is not None:
            chosen.append(int(self.max_bytes_ratio * original_bytes))
        return min(chosen) if chosen else None

    def check_metrics(self, metrics_type) -> None:
        """Refuse a limit the model kind does not measure (a classifier has no
        perplexity), in one line."""
        names = {f.name for f in fields(metrics_type)}
        for limit, metric in _LIMIT_METRICS.items():
            if getattr(self, limit) is not None and metric not in names:
                raise ValueError(f"{limit}: this model kind does not measure {metric}")

    def describe(self) -> str:
        parts = []
        if self.max_bytes is not None:
            small = self.max_bytes < 100_000  # "0.0 MB" for --max-bytes 1 (sweep nine)
            size = f"{self.max_bytes:,} bytes" if small else f"{self.max_bytes / 1e6:.1f} MB"
            parts.append(f"size <= {size}")
        if self.max_bytes_ratio is not None:
            parts.append(f"size <= {self.max_bytes_ratio:g}x the original")
        if self.max_decode_ms is not None:
            parts.append(f"decode <= {self.max_decode_ms:g} ms/token")
        if self.min_tokens_per_s is not None:
            parts.append(f">= {self.min_tokens_per_s:g} tokens/s")
        if self.max_kl is not None:
            parts.append(f"KL <= {self.max_kl:g}")
        if self.max_ppl_increase_pct is not None:
            parts.append(f"perplexity increase <= {self.max_ppl_increase_pct:g}%")
        if self.min_accuracy is not None:
            parts.append(f"accuracy >= {self.min_accuracy:.1%}")
        return ", ".join(parts) or "no limits"

    def violations(self, record, reference, original_bytes: int) -> list[str]:
        """Why ``record`` fails the limits (empty: it meets them). ``reference``
        is the original's record (same protocols); a limit whose metric was not
        measured counts as failed: a number not measured meets nothing."""
        out = []
        if record.broken:
            out.append(f"broken: {record.broken}")
        limit = self.byte_limit(original_bytes)
        if limit is not None and record.bytes > limit:
            size, bound = sizes_apart(record.bytes, limit)
            out.append(f"size {size} > {bound}")
        checks = (
            ("max_decode_ms", "decode_ms_per_token", "decode {:.2f} ms/token > {:g}", False),
            ("min_tokens_per_s", "tokens_per_s", "{:.1f} tokens/s < {:g}", True),
            ("max_kl", "mean_kl", "KL {:.4f} > {:g}", False),
            ("min_accuracy", "accuracy", "accuracy {:.4f} < {:g}", True),
        )
        for limit_name, metric, text, at_least in checks:
            bound = getattr(self, limit_name)
            if bound is None:
                continue
            value = record.metric(metric)
            if value is None:
                out.append(f"{metric} not measured")
            elif (value < bound) if at_least else (value > bound):
                out.append(text.format(value, bound))
        if self.max_ppl_increase_pct is not None:
            increase = ppl_increase_pct(record, reference)
            if increase is None:
                out.append("perplexity increase not measured")
            elif increase > self.max_ppl_increase_pct:
                out.append(f"perplexity +{increase:.2f}% > +{self.max_ppl_increase_pct:g}%")
        return out


def ppl_increase_pct(record, reference) -> float | None:
    """Perplexity increase over the original's, in percent, same protocol."""
    ppl = record.metric("ppl")
    base = reference.metric("ppl") if reference is not None else None
    if ppl is None or not base or record.eval_protocol != reference.eval_protocol:
        return None
    return (ppl / base - 1) * 100


def sizes_apart(size: int, limit: int) -> tuple[str, str]:
    """Both sizes with as many decimals as it takes for them to read apart
    ("0.2 MB > limit 0.2 MB" said a size over its limit, sweep eleven); in
    bytes below 100 kB, as the limit itself is then written."""
    if limit < 100_000:
        return f"{size:,} bytes", f"{limit:,} bytes"
    for decimals in range(1, 7):
        a, b = f"{size / 1e6:.{decimals}f}", f"{limit / 1e6:.{decimals}f}"
        if a != b:
            break
    return f"{a} MB", f"{b} MB"
