"""A RunRecord as a few terminal lines: flags first, then size, the task's
own speed and quality lines, notes. Each metrics type has its printer."""

from __future__ import annotations

from core.results.metrics import ClassifierMetrics, LMMetrics


def print_record(record) -> None:
    print(f"{record.recipe_name}")
    if record.broken:
        print(f"  BROKEN: {record.broken}")
    if record.machine_busy:
        print(f"  BUSY MACHINE: {record.machine_busy}")
    print(f"  size {record.bytes / 1e6:.1f} MB {record.bytes_by_component}")
    _PRINTERS[type(record.metrics)](record, record.metrics)
    for note in record.notes:
        print(f"  note: {note}")


def _print_lm(record, m: LMMetrics) -> None:
    spread = ""
    if m.decode_ms_p10 is not None and m.decode_ms_p90 is not None:
        spread = f" [p10 {m.decode_ms_p10:.2f}, p90 {m.decode_ms_p90:.2f}]"
    print(
        f"  prefill {m.prefill_ms:.1f} ms, decode {m.decode_ms_per_token:.2f} ms/token{spread} "
        f"({m.tokens_per_s:.1f} tokens/s), {record.device}, {record.threads} threads"
    )
    ratio = f"{m.ppl_ratio:.4f}" if m.ppl_ratio is not None else "not measured"
    print(
        f"  perplexity {_ppl_text(m)}; top-1 agreement {m.top1_agreement}; "
        f"perplexity ratio to the original on the same tokens {ratio}"
    )


def _ppl_text(m: LMMetrics) -> str:
    """Perplexity with both ends of its 95% interval (it is not symmetric)."""
    if m.ppl is None:
        return "not evaluated"
    if m.ppl_ci95_low is None or m.ppl_ci95_high is None:
        return f"{m.ppl:.3f} (one window: no interval)"
    return f"{m.ppl:.3f} (95% CI {m.ppl_ci95_low:.3f} to {m.ppl_ci95_high:.3f})"


def _print_classifier(record, m: ClassifierMetrics) -> None:
    print(
        f"  latency {m.latency_ms:.2f} ms [p10 {m.latency_ms_p10:.2f}, p90 "
        f"{m.latency_ms_p90:.2f}] ({m.examples_per_s:.1f} examples/s), "
        f"{record.device}, {record.threads} threads"
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
