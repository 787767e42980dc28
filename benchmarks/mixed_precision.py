"""A mixed int8/int4 recipe chosen by the data, against uniform int4, on the
default model (issue 14's per-layer target).

1. The Sensitivity job (core/jobs/sensitivity.py) compresses each layer
   alone with int4 g128 RTN and scores it by KL on the dev split.
2. The mixed recipe: int8 weight-only on the most sensitive layers, int4
   g128 GPTQ on the rest; as many int8 layers as fit in 1.15x the bytes of
   uniform int4 g128 GPTQ (by the size estimate, then measured).
3. Both recipes built (GPTQ calibrated on the calibration split) and scored
   on the quick protocol's report-split windows, beside the original.

Target: bytes <= 1.15x uniform int4 g128 GPTQ, perplexity increase <= 0.6x its.

    .venv/bin/python benchmarks/mixed_precision.py [--threads N] [--dev-windows 4]

Last line: JSON with bytes, perplexities, increases and their ratios.
"""

from __future__ import annotations

import argparse
import json
import time

from core.evaluate.perplexity import QUICK_PROTOCOL, compute_perplexity, perplexity_windows
from core.jobs.experiment import ExperimentSettings, read_calibration
from core.jobs.sensitivity import SensitivityCell, SensitivityMap, SensitivityRequest, sensitivity
from core.models.loading import load_model
from core.models.size import measure_size
from core.passes import REGISTRY as R
from core.passes.recipe import Recipe, apply_recipe
from core.passes.size_estimate import estimate_size
from core.runtime.device import set_threads

BYTES_BUDGET = 1.15


def layer_text(layers) -> str:
    return ",".join(str(i) for i in sorted(layers))


def mixed_recipe(sensitive: list[int], layers: int) -> Recipe:
    rest = [i for i in range(layers) if i not in sensitive]
    return Recipe(
        (
            R["int8_weight_only"](layers=layer_text(sensitive)),
            R["int4_weight_only"](128, "gptq", layers=layer_text(rest)),
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--dev-windows", type=int, default=4)
    args = parser.parse_args()
    set_threads(args.threads)
    start = time.perf_counter()
    original = load_model("default", device="cpu")
    layers = original.model.config.num_hidden_layers

    probe = R["int4_weight_only"](128, "rtn")
    request = SensitivityRequest(original, probe, windows=args.dev_windows)
    smap = None
    for event in sensitivity(request):
        if isinstance(event, SensitivityCell):
            print(f"layer {event.layer:2d}: KL {event.mean_kl:.5f}, ppl x{event.ppl_ratio:.4f}")
        elif isinstance(event, SensitivityMap):
            smap = event
    print(f"sensitivity: {smap.protocol} ({time.perf_counter() - start:.0f} s)", flush=True)

    uniform = Recipe((R["int4_weight_only"](128, "gptq"),))
    budget = BYTES_BUDGET * estimate_size(original.model, uniform).total_bytes
    count = 0
    while count < layers:
        trial = mixed_recipe(smap.most_sensitive_layers(count + 1), layers)
        if estimate_size(original.model, trial).total_bytes > budget:
            break
        count += 1
    sensitive = smap.most_sensitive_layers(count)
    mixed = mixed_recipe(sensitive, layers)
    print(f"int8 on the {count} most sensitive layers: {layer_text(sensitive)}", flush=True)

    calibration = read_calibration(original, ExperimentSettings(), lambda _: None)
    windows = perplexity_windows(original.tokenizer, QUICK_PROTOCOL)
    base_ppl = compute_perplexity(
        original.model, original.tokenizer, QUICK_PROTOCOL, windows=windows
    ).ppl
    full_bytes = measure_size(original.model).total_bytes
    rows = {}
    for name, recipe in (("uniform_int4_g128_gptq", uniform), ("mixed_int8_int4", mixed)):
        built = apply_recipe(original, recipe, calibration)
        ppl = compute_perplexity(
            built.loaded.model, original.tokenizer, QUICK_PROTOCOL, windows=windows
        ).ppl
        nbytes = measure_size(built.loaded.model).total_bytes
        rows[name] = {
            "recipe": recipe.to_dict()["passes"],
            "bytes": nbytes,
            "bytes_ratio_to_fp32": round(nbytes / full_bytes, 4),
            "ppl": round(ppl, 4),
            "ppl_delta_pct": round((ppl / base_ppl - 1) * 100, 3),
        }
        print(
            f"{name:24s} {nbytes / 1e6:7.1f} MB  ppl {ppl:.3f}  "
            f"({rows[name]['ppl_delta_pct']:+.2f}%)",
            flush=True,
        )
        del built
    u, m = rows["uniform_int4_g128_gptq"], rows["mixed_int8_int4"]
    bytes_ratio = m["bytes"] / u["bytes"]
    delta_ratio = m["ppl_delta_pct"] / u["ppl_delta_pct"]
    print(
        f"original ppl {base_ppl:.3f}; mixed/uniform bytes {bytes_ratio:.3f} (target <= "
        f"{BYTES_BUDGET}: {'met' if bytes_ratio <= BYTES_BUDGET else 'NOT met'}); increase "
        f"ratio {delta_ratio:.3f} (target <= 0.6: {'met' if delta_ratio <= 0.6 else 'NOT met'})"
    )
    print(
        json.dumps(
            {
                "original_ppl": round(base_ppl, 4),
                "sensitivity": [
                    {
                        "layer": c.layer,
                        "kl": round(c.mean_kl, 6),
                        "ppl_ratio": round(c.ppl_ratio, 5),
                    }
                    for c in smap.cells
                ],
                "int8_layers": sorted(sensitive),
                "rows": rows,
                "bytes_ratio": round(bytes_ratio, 4),
                "ppl_delta_ratio": round(delta_ratio, 4),
                "elapsed_s": round(time.perf_counter() - start, 1),
            }
        )
    )


if __name__ == "__main__":
    main()
