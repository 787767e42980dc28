"""A RunRecord as a few terminal lines: flags first, then size, the task's
own speed and quality lines, notes. Each metrics type has its printer."""

from __future__ import annotations

from core.measure.compare import FASTER, NO_SPREAD, SLOWER, speed_range, speed_verdict
from core.results.metrics import ClassifierMetrics, LMMetrics

# The timed number each kind is compared on, and its words.
_COMPARED = {
    LMMetrics: ("decode_ms_per_token", "decode"),
    ClassifierMetrics: ("latency_ms", "latency"),
}


def print_record(record, baseline=None) -> None:
    """``baseline``: a stored run of the original to compare speeds with."""
    print(f"{record.recipe_name}")
    if record.broken:
        print(f"  BROKEN: {record.broken}")
    if record.machine_busy:
        print(f"  BUSY MACHINE: {record.machine_busy}")
    parts = ", ".join(f"{name} {_mb(n)}" for name, n in record.bytes_by_component.items())
    print(f"  size {_mb(record.bytes)}" + (f" ({parts})" if parts else ""))
    _PRINTERS[type(record.metrics)](record, record.metrics)
    if baseline is not None and type(baseline.metrics) is type(record.metrics):
        print(f"  {speed_against(record, baseline)}")
    for note in record.notes:
        print(f"  note: {note}")


def _mb(n: int) -> str:
    """Decimal megabytes, as the exported files are sized; kB below 0.1 MB
    (a tiny model's norms would all read 0.0 MB)."""
    if n == 0:  # e.g. a head tied to the embeddings: stored once, counted there
        return "0 B"
    return f"{n / 1e6:.1f} MB" if n >= 1e5 else f"{n / 1e3:.1f} kB"


def speed_against(record, baseline) -> str:
    """One line: the run's median time against the original's, called
    faster or slower only when their p10-p90 ranges are apart."""
    name, words = _COMPARED[type(record.metrics)]
    a, b = baseline.metric(name), record.metric(name)
    if a is None or b is None or a <= 0:
        return f"{words} against the original: not measured on both"
    from core.measure.compare import incomparable

    if why := incomparable(record, baseline, name):
        return f"{words} not compared with the original's (run {baseline.run_id}): {why}"
    verdict = speed_verdict(speed_range(baseline.metric, name), speed_range(record.metric, name))
    why = "p10-p90 ranges apart" if verdict in (FASTER, SLOWER) else "p10-p90 ranges overlap"
    if verdict == NO_SPREAD:
        why = "a run stored without its p10-p90"
    return (
        f"{words} {b / a:.3f}x the original's ({baseline.backend} run {baseline.run_id}): "
        f"{verdict} ({why})"
    )


def _print_lm(record, m: LMMetrics) -> None:
    spread = ""
    if m.decode_ms_p10 is not None and m.decode_ms_p90 is not None:
        spread = f" [p10 {m.decode_ms_p10:.2f}, p90 {m.decode_ms_p90:.2f}]"
    print(
        f"  prefill {m.prefill_ms:.1f} ms, decode {m.decode_ms_per_token:.2f} ms/token{spread} "
        f"({m.tokens_per_s:.1f} tokens/s), {record.backend or 'torch'} on {record.device}, "
        f"{record.threads} threads"
    )
    print(f"  protocol {record.bench_protocol}")
    ratio = f"{m.ppl_ratio:.4f}" if m.ppl_ratio is not None else "not measured"
    agreement = f"{m.top1_agreement:.1%}" if m.top1_agreement is not None else "not measured"
    if record.is_original:  # compared with itself: nothing to measure
        ratio = agreement = "the original itself"
    print(
        f"  perplexity {_ppl_text(m, record.eval_protocol)}; top-1 agreement {agreement}; "
        f"perplexity ratio to the original on the same tokens {ratio}"
    )
    if record.eval_protocol:
        print(f"  eval protocol {record.eval_protocol}")


def _ppl_text(m: LMMetrics, eval_protocol: str = "") -> str:
    """Perplexity with both ends of its 95% interval (it is not symmetric)."""
    if m.ppl is None:  # evaluated, yet no number: NaN, stored as null
        return "not a number (NaN)" if eval_protocol else "not evaluated"
    if m.ppl_ci95_low is None or m.ppl_ci95_high is None:
        return f"{m.ppl:.3f} (one window: no interval)"
    return f"{m.ppl:.3f} (95% CI {m.ppl_ci95_low:.3f} to {m.ppl_ci95_high:.3f})"


def _print_classifier(record, m: ClassifierMetrics) -> None:
    print(
        f"  latency {m.latency_ms:.2f} ms [p10 {m.latency_ms_p10:.2f}, p90 "
        f"{m.latency_ms_p90:.2f}] ({m.examples_per_s:.1f} examples/s), "
        f"{record.backend or 'torch'} on {record.device}, {record.threads} threads"
    )
    print(f"  protocol {record.bench_protocol}")
    if m.accuracy is None:
        print("  accuracy not evaluated")
        return
    print(
        f"  accuracy {m.accuracy:.1%} (95% CI {m.accuracy_ci95_low:.1%} to "
        f"{m.accuracy_ci95_high:.1%}, {m.examples} reviews); agreement with the "
        f"original {m.agreement:.1%}"
    )
    print(f"  protocol {record.eval_protocol}")


_PRINTERS = {LMMetrics: _print_lm, ClassifierMetrics: _print_classifier}
