"""PyTorch fp32 eager against ONNX Runtime fp32 and int8, side by side in one run.

Decode ms/token and prefill ms come from core/measure/speed.py's protocol, run in
interleaved rounds (every backend once per round, rotating order; the median
over rounds is reported) because this machine drifts over minutes. Quality on
the quick perplexity windows: ORT fp32's fidelity to PyTorch (top-1 agreement,
max |logit diff|) and ORT int8's perplexity change against PyTorch fp32, on the
same windows. Exports come from the workbench cache (made on first use).

    .venv/bin/python benchmarks/ort_vs_torch.py [--threads N] [--rounds 5]

Last line: {"torch_fp32_ms", "ort_fp32_ms", "ort_int8_ms", "ort_fp32_top1",
"ort_fp32_max_abs", "ort_int8_ppl_delta_pct", ...}
"""

from __future__ import annotations

import argparse
import json
import statistics
from dataclasses import replace

from core.evaluate.perplexity import QUICK_PROTOCOL, compute_perplexity, perplexity_windows
from core.measure.interleave import interleaved_rounds
from core.measure.speed import BenchSettings
from core.models.loading import load_model
from core.onnx.cache import load_ort_version
from core.onnx.fidelity import compare_logits
from core.progress import CancelToken, Progress
from core.runtime.device import set_threads


def _progress(event: Progress) -> None:
    print(f"[{event.stage}]", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default", help="default, or a HF folder (smoke test)")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--rounds", type=int, default=5, help="interleaved speed rounds")
    parser.add_argument("--prompt-tokens", type=int, default=128)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--context-tokens", type=int, default=QUICK_PROTOCOL.context_tokens)
    parser.add_argument("--windows", type=int, default=QUICK_PROTOCOL.quick_windows)
    args = parser.parse_args()
    threads = set_threads(args.threads)  # ORT sessions take torch's thread count
    torch_loaded = load_model(args.model, device="cpu")
    backends = {
        "torch_fp32": torch_loaded,
        "ort_fp32": load_ort_version(torch_loaded, False, "cpu", _progress),
        "ort_int8": load_ort_version(torch_loaded, True, "cpu", _progress),
    }
    protocol = replace(
        QUICK_PROTOCOL,
        context_tokens=args.context_tokens,
        stride=args.context_tokens // 2,
        quick_windows=args.windows,
    )
    tokenizer = torch_loaded.tokenizer
    windows = perplexity_windows(tokenizer, protocol)
    print(f"{args.model}, {threads} threads; perplexity: {protocol.describe()}", flush=True)

    ppl = {}
    for name, loaded in backends.items():
        ppl[name] = compute_perplexity(loaded.model, tokenizer, protocol, windows=windows).ppl
        print(f"{name}: ppl {ppl[name]:.4f}", flush=True)
    fp32 = compare_logits(
        torch_loaded.model, backends["ort_fp32"].model, windows, int8=False, cancel=CancelToken()
    )
    int8 = compare_logits(
        torch_loaded.model, backends["ort_int8"].model, windows, int8=True, cancel=CancelToken()
    )

    one_run = BenchSettings(
        prompt_tokens=args.prompt_tokens,
        new_tokens=args.new_tokens,
        warmup=0,
        min_repeats=1,
        min_time_s=0,
    )
    print(f"speed: {args.rounds} interleaved rounds of: {one_run.describe()}", flush=True)
    names = list(backends)
    times = interleaved_rounds(
        backends,
        args.rounds,
        one_run,
        lambda done: print(f"round {done}/{args.rounds} done", flush=True),
    )
    prefill, decode = times.prefill_ms, times.decode_ms_per_token

    ms = {name: statistics.median(decode[name]) for name in names}
    base = ms["torch_fp32"]
    print(
        f"{'backend':12s} {'prefill':>8s} {'ms/tok':>8s} {'speedup':>8s} {'ppl':>9s} {'dppl%':>8s}"
    )
    for name in names:
        delta = (ppl[name] / ppl["torch_fp32"] - 1) * 100
        print(
            f"{name:12s} {statistics.median(prefill[name]):8.1f} {ms[name]:8.2f} "
            f"{base / ms[name]:8.2f} {ppl[name]:9.4f} {delta:+8.3f}"
        )
    print(
        f"ORT fp32 vs PyTorch: top-1 {fp32.top1_agreement:.4%}, max |logit diff| "
        f"{fp32.max_abs_logit_diff:.2e}, KL {fp32.mean_kl:.2e} over {fp32.positions} positions"
    )
    print(
        f"ORT int8 vs PyTorch: top-1 {int8.top1_agreement:.2%}, KL {int8.mean_kl:.3f}; "
        f"int8 speedup over torch fp32 eager {base / ms['ort_int8']:.2f}x (target >= 2x)"
    )
    print(
        json.dumps(
            {
                "torch_fp32_ms": round(ms["torch_fp32"], 3),
                "ort_fp32_ms": round(ms["ort_fp32"], 3),
                "ort_int8_ms": round(ms["ort_int8"], 3),
                "ort_fp32_top1": round(fp32.top1_agreement, 6),
                "ort_fp32_max_abs": fp32.max_abs_logit_diff,
                "ort_int8_ppl_delta_pct": round((ppl["ort_int8"] / ppl["torch_fp32"] - 1) * 100, 3),
                "ort_int8_top1": round(int8.top1_agreement, 5),
                "ort_int8_speedup": round(base / ms["ort_int8"], 3),
                "prefill_ms": {name: round(statistics.median(prefill[name]), 2) for name in names},
                "decode_ms_rounds": {name: [round(v, 3) for v in decode[name]] for name in names},
                "threads": threads,
                "rounds": args.rounds,
            }
        )
    )


if __name__ == "__main__":
    main()
