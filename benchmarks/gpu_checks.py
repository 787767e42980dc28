"""Every GPU check in one run of a few minutes (issue 16 item 6), to run
whenever a GPU machine is lent. No CUDA number is shown that was not measured.

The model is SmolLM2-135M's architecture with seeded random weights: the
98 MB default model cannot travel to the GPU machine, so
``benchmarks/gpu_model/`` holds its config and tokenizer (no weights) and the
model is built there. Speed and memory are the real architecture's; quality
figures are fidelity between dtypes and runtimes, never perplexity.

What is measured, each item on its own (a failure is reported with its error
class and first line, and the rest still runs):
  1. environment: GPU, torch / transformers / CUDA versions, ONNX Runtime's
     providers (a CPU build of onnxruntime cannot run on CUDA: said so, not faked)
  2. PyTorch eager and compiled (torch.compile) in bf16, fp16 and fp32:
     prefill ms, decode ms/token (median, p10, p90 over runs), tokens/s and
     the CUDA allocator peak, by the Bench job's protocol (core/jobs/bench.py,
     core/measure/speed.py: synchronised timing, memory.py: allocator peak);
     compile seconds; whether compiled greedy tokens equal eager's; fidelity
     (top-1 agreement, mean KL) of bf16 and fp16 to fp32 and of the GPU's fp32
     to the CPU's, on random-token windows
  3. recipes on CUDA, eager, bf16 base: int8 weight-only, W8A8 (SmoothQuant),
     int4 weight-only (g128 RTN), cast fp16 / bf16, 50% unstructured pruning,
     layer dropping, built by core.jobs.experiment.build_compressed as a Run
     builds them (calibration: the pydoc calibration split, stdlib text);
     decode speed, allocator peak, fidelity to the bf16 base. A quantizer that
     fails on CUDA is also built on the CPU and moved to CUDA, to tell whether
     the build or the kernel refuses.
  4. correctness: 16 greedy tokens on CUDA (fp32) equal the CPU's, on tiny
     random GPT-2, Llama, Qwen2, Phi-3 and Gemma 2 (tests/tiny_models.py)
  5. a wall-clock budget (--budget-s): an item that would outrun it is
     stopped or skipped, and the report says which

On the GPU machine (bare, no network), from the repository root, with
``carry: [".whl"]`` (the model folder is committed) and a timeout of about
540 s (the default --budget-s is 420; installing and importing take ~30 s):

    set -o pipefail; python3 -m pip install -q --no-index --no-deps --no-compile \
        --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        && export PYTHONPATH=/tmp/site:$PWD \
        && PYTHONUNBUFFERED=1 python3 benchmarks/gpu_checks.py --device cuda 2>&1 \
        | tee $OUT/gpu_checks.log

``.whl`` (ignored by git) holds what that machine lacks or has too old: it
has torch 2.11 and transformers 5.17, and we need transformers >= 5.24.
Made here once:

    echo /.whl/ >> .git/info/exclude
    python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
        --implementation cp --platform manylinux_2_28_x86_64 \
        --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl \
        transformers==5.24.0 regex==2026.11.19 platformdirs==4.14.9

transformers 5.24 asks huggingface-hub >=1.31,<3 and tokenizers >=0.23.1,<0.24:
the machine's 1.33.0 and 0.23.2 fit (checked here with those two versions).
It checks regex >= 2025.10.22 at import, and the machine's regex version is
unknown, so regex travels; platformdirs is absent there (the script sets
WORKBENCH_CACHE_DIR, so it is a spare). Do not carry torch.

Order: eager, fidelity, families, compiled bf16, recipes, compiled fp16 and
fp32; compiling is the slowest item, so the budget cuts those last two first.

Here, on the CPU (tiny sizes, a few minutes):

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/gpu_checks.py --device cpu --smoke

Output: a line per figure and the elapsed time per section, then one line of
JSON with every figure. With OUT set, the JSON is also written to
$OUT/gpu_checks.json after every section, so a run stopped early keeps what
it measured.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import platform
import shutil
import signal
import sys
import tempfile
import threading
import time
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing is fetched, here or there
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

MODEL_CONFIG_DIR = Path(__file__).resolve().parent / "gpu_model"
LABEL = (
    "SmolLM2-135M architecture, random weights (speed only; quality figures are "
    "fidelity between dtypes/runtimes, not perplexity of the real model)"
)
ORT_CUDA_ABSENT = "not measurable on this machine (onnxruntime CPU build)"
DTYPES = ("bfloat16", "float16", "float32")
SHORT = {"bfloat16": "bf16", "float16": "fp16", "float32": "fp32"}
FAMILIES = ("gpt2", "llama", "qwen2", "phi3", "gemma2")
FAMILY_PROMPT = "The history of computing is a story of machines that became"
SECTIONS = ("env", "eager", "fidelity", "families", "recipes", "compiled")
# --smoke: the same architecture shrunk, so every code path runs in seconds on a CPU.
SMOKE_CONFIG = {
    "num_hidden_layers": 2,
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 16,
}


@dataclass(frozen=True)
class Plan:
    device: str
    smoke: bool
    budget_s: float
    threads: int | None
    sections: tuple[str, ...] = SECTIONS
    prompt_tokens: int = 64
    new_tokens: int = 32
    warmup: int = 2
    min_repeats: int = 5
    min_time_s: float = 1.0
    max_repeats: int = 10
    windows: int = 4  # random-token windows for fidelity
    window_tokens: int = 128
    calibration_windows: int = 16
    calibration_length: int = 256
    layers_dropped: int = 8
    family_tokens: int = 16
    compile_dtypes: tuple[str, ...] = DTYPES
    seed: int = 0


def make_plan(
    device: str,
    smoke: bool,
    budget_s: float,
    threads: int | None = None,
    sections: tuple[str, ...] = SECTIONS,
    compile_dtypes: tuple[str, ...] | None = None,
) -> Plan:
    plan = Plan(device, smoke, budget_s, threads, sections)
    if smoke:
        plan = Plan(
            device,
            smoke,
            budget_s,
            threads,
            sections,
            prompt_tokens=16,
            new_tokens=8,
            warmup=1,
            min_repeats=2,
            min_time_s=0.0,
            max_repeats=2,
            windows=2,
            window_tokens=32,
            calibration_windows=2,
            calibration_length=32,
            layers_dropped=1,
            family_tokens=8,
            compile_dtypes=("float32",),
        )
    if compile_dtypes is not None:
        plan = Plan(**{**asdict(plan), "compile_dtypes": tuple(compile_dtypes)})
    return plan


# ---------------------------------------------------------------- budget, report


class BudgetExceeded(BaseException):
    """Raised by the alarm inside an item that outran the budget. A
    BaseException, so no ``except Exception`` inside core swallows it."""


class Budget:
    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.start = time.perf_counter()

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def left(self) -> float:
        return self.seconds - self.elapsed()

    @contextlib.contextmanager
    def deadline(self):
        """Raise BudgetExceeded in the main thread when the budget runs out
        (between Python bytecodes: a long kernel finishes first)."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def on_alarm(_signum, _frame):
            raise BudgetExceeded

        previous = signal.signal(signal.SIGALRM, on_alarm)
        signal.setitimer(signal.ITIMER_REAL, max(self.left(), 0.01))
        try:
            yield
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)


def describe_error(error: BaseException) -> str:
    """Class, first line and where it was raised: what the lead needs from one run."""

    def one(e: BaseException) -> str:
        text = str(e).strip()
        return f"{type(e).__name__}: {text.splitlines()[0][:240] if text else ''}".rstrip(": ")

    message = one(error)
    cause = error.__cause__
    if cause is not None and one(cause) not in message:
        message += f" (from {one(cause)})"
    frames = traceback.extract_tb(error.__traceback__)
    if frames:
        last = frames[-1]
        message += f" [at {Path(last.filename).name}:{last.lineno} {last.name}]"
    return message


class Report:
    """Every figure, as printed lines and one JSON object (saved after each section)."""

    def __init__(self, plan: Plan, budget: Budget, out_path: Path | None) -> None:
        self.plan = plan
        self.budget = budget
        self.out_path = out_path
        self.stopped = False  # the budget ran out: every later item is skipped
        self.data: dict = {
            "label": LABEL,
            "device": plan.device,
            "smoke": plan.smoke,
            "plan": asdict(plan),
            "environment": {},
            "sections": {},
            "section_seconds": {},
            "skipped": [],
        }

    @staticmethod
    def say(line: str) -> None:
        print(line, flush=True)

    def item(self, section: str, name: str, run, min_s: float = 0.0) -> dict:
        """Run ``run() -> dict`` as one item; a failure or the budget is
        recorded, never raised. Its dict's "summary" is printed."""
        rows = self.data["sections"].setdefault(section, {})
        left = self.budget.left()
        reason = None
        if self.stopped:
            reason = "the budget ran out earlier"
        elif left < min_s:
            reason = f"{left:.0f} s of budget left, this item needs about {min_s:.0f} s"
        if reason:
            self.data["skipped"].append(f"{section} / {name}: {reason}")
            self.say(f"  [{name}] skipped: {reason}")
            rows[name] = {"skipped": reason}
            return rows[name]
        start = time.perf_counter()
        try:
            with self.budget.deadline():
                result = run()
        except BudgetExceeded:
            self.stopped = True
            result = {
                "error": f"stopped: the {self.budget.seconds:.0f} s budget ran out "
                f"{time.perf_counter() - start:.0f} s into this item"
            }
        except Exception as error:  # each item's failure is a result, not the end
            result = {"error": describe_error(error)}
        finally:
            free_memory()
        result["seconds"] = round(time.perf_counter() - start, 2)
        rows[name] = result
        text = result.get("summary") or result.get("error") or "done"
        self.say(f"  [{name}] {text} ({result['seconds']:.1f} s)")
        return result

    def section(self, name: str, body) -> None:
        if name not in self.plan.sections:
            return
        self.say(f"== {name}")
        start = time.perf_counter()
        try:
            body()
        except Exception as error:  # a section's setup failed: say so, go on
            self.data["sections"].setdefault(name, {})["error"] = describe_error(error)
            self.say(f"  section failed: {describe_error(error)}")
        seconds = time.perf_counter() - start
        spent = self.data["section_seconds"]  # a section may run in two parts
        spent[name] = round(spent.get(name, 0) + seconds, 1)
        self.say(
            f"== {name}: {seconds:.1f} s (total {self.budget.elapsed():.1f} s "
            f"of a {self.plan.budget_s:.0f} s budget)"
        )
        self.save()

    def save(self) -> None:
        self.data["elapsed_s"] = round(self.budget.elapsed(), 1)
        if self.out_path is None:
            return
        try:
            self.out_path.parent.mkdir(parents=True, exist_ok=True)
            self.out_path.write_text(json.dumps(self.data, indent=1, default=str))
        except OSError as error:  # the figures still reach the last printed line
            self.say(f"  could not write {self.out_path}: {error}")


# Left out of the printed JSON line (kept in $OUT/gpu_checks.json): the
# device's output tail is 12,000 characters and should still show the lines above.
VERBOSE_KEYS = {
    "summary",
    "greedy_tokens",
    "cpu_tokens",
    "device_tokens",
    "machine_load",
    "protocol",
    "peak_memory_bytes",
    "peak_memory_kind",
    "runner",
    "device_name",
    "tokens",
    "windows",
    "plan",
}


def compact(value):
    """``value`` without VERBOSE_KEYS and empty texts, floats to 4 significant digits."""
    if isinstance(value, dict):
        return {k: compact(v) for k, v in value.items() if k not in VERBOSE_KEYS and v != ""}
    if isinstance(value, (list, tuple)):
        return [compact(v) for v in value]
    if isinstance(value, float):
        return float(f"{value:.4g}")
    return value


def free_memory() -> None:
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


# ---------------------------------------------------------------- building blocks


def environment(device_name: str) -> dict:
    import huggingface_hub
    import tokenizers
    import torch
    import transformers

    from core.measure.environment import cpu_name
    from core.runtime.device import cpu_count

    env = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "transformers": transformers.__version__,
        "huggingface_hub": huggingface_hub.__version__,
        "tokenizers": tokenizers.__version__,
        "cpu": cpu_name(),
        "cpus": cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "float32_matmul_precision": torch.get_float32_matmul_precision(),
        "cuda_available": torch.cuda.is_available(),
    }
    if device_name.startswith("cuda"):
        device = torch.device(device_name)
        props = torch.cuda.get_device_properties(device)
        env |= {
            "gpu": props.name,
            "gpu_memory_gib": round(props.total_memory / 2**30, 1),
            "compute_capability": f"{props.major}.{props.minor}",
            "multiprocessors": props.multi_processor_count,
            "bf16_supported": torch.cuda.is_bf16_supported(),
            "cudnn": torch.backends.cudnn.version(),
        }
    env["onnxruntime"] = ort_on_cuda()
    return env


def ort_on_cuda() -> dict:
    """ONNX Runtime's providers; CUDA figures only if it has the CUDA provider
    (this script measures none: a CPU build is said to be one)."""
    try:
        import onnxruntime
    except ImportError:
        return {"on_cuda": "not measurable on this machine (onnxruntime not installed)"}
    providers = onnxruntime.get_available_providers()
    on_cuda = (
        "CUDA provider present; not measured by this script"
        if "CUDAExecutionProvider" in providers
        else ORT_CUDA_ABSENT
    )
    return {"version": onnxruntime.__version__, "providers": providers, "on_cuda": on_cuda}


def kernel_probes(device: str) -> dict:
    """Which of torch's low-precision kernels run on ``device``, and whether
    they compute what the dequantised weights give (max |diff| relative to
    the reference's max |value|): what a CUDA path of our int8/int4 modules
    can be built on."""
    import torch

    torch.manual_seed(0)
    n, k = 1536, 576
    w = torch.randn(n, k)
    x = torch.randn(1, k).to(torch.bfloat16)
    out: dict = {}

    def probe(name, body):
        try:
            out[name] = body()
        except Exception as error:
            out[name] = f"failed: {describe_error(error)}"

    def rel(y, ref) -> float:
        return round(float((y.float().cpu() - ref).abs().max() / ref.abs().max()), 5)

    scales = w.abs().amax(dim=1) / 127
    q8 = torch.round(w / scales[:, None]).clamp(-127, 127).to(torch.int8)
    ref8 = x.float() @ (q8.float() * scales[:, None]).t()
    probe(
        "weight_int8pack_mm",
        lambda: rel(
            torch.ops.aten._weight_int8pack_mm(
                x.to(device), q8.to(device), scales.to(torch.bfloat16).to(device)
            ),
            ref8,
        ),
    )
    for m in (1, 16, 17, 32):
        xq = torch.randint(-127, 128, (m, k), dtype=torch.int8)
        ref = xq.int() @ q8.t().int()
        probe(
            f"int_mm_m{m}",
            lambda xq=xq, ref=ref: bool(
                torch.equal(torch._int_mm(xq.to(device), q8.t().contiguous().to(device)).cpu(), ref)
            ),
        )
    # int4 (tinygemm): our model's k = 576 needs a small inner-k tile count.
    for k4, g, tiles in ((576, 64, 2), (576, 64, 4), (1024, 128, 8)):
        w4 = torch.randn(n, k4)
        x4 = torch.randn(1, k4).to(torch.bfloat16)
        groups = w4.reshape(n, k4 // g, g)
        lo, hi = groups.amin(-1, keepdim=True), groups.amax(-1, keepdim=True)
        sc = (hi - lo) / 15
        q4 = torch.round((groups - lo) / sc).clamp(0, 15).to(torch.int32)
        ref4 = x4.float() @ (q4 * sc + lo).reshape(n, k4).t()
        q4 = q4.reshape(n, k4)
        zero = lo.squeeze(-1) + 8 * sc.squeeze(-1)
        sz = torch.stack([sc.squeeze(-1), zero], -1).transpose(0, 1).contiguous()
        sz = sz.to(torch.bfloat16)
        for order, packed in (
            ("hi_first", (q4[:, ::2] << 4 | q4[:, 1::2]).to(torch.uint8)),
            ("lo_first", (q4[:, 1::2] << 4 | q4[:, ::2]).to(torch.uint8)),
        ):
            probe(
                f"weight_int4pack_mm_k{k4}_g{g}_tiles{tiles}_{order}",
                lambda packed=packed, x4=x4, sz=sz, ref4=ref4, g=g, tiles=tiles: rel(
                    torch.ops.aten._weight_int4pack_mm(
                        x4.to(device),
                        torch.ops.aten._convert_weight_to_int4pack(packed.to(device), tiles),
                        g,
                        sz.to(device),
                    ),
                    ref4,
                ),
            )
    if device != "cpu":
        probe("decode_matmul_us", lambda: kernel_times(device))
    return out


def kernel_times(device: str) -> dict:
    """Microseconds of one decode-step matmul (1 x 576 by 576 x 1536, the
    model's up projection) per kernel, CUDA events over 200 calls after 20
    warm-ups: which low-precision kernel pays at batch 1."""
    import torch
    import torch.nn.functional as F

    from core.models.quantized_linear import (
        Int4WeightOnlyLinear,
        Int8DynamicLinear,
        Int8WeightOnlyLinear,
    )

    torch.manual_seed(0)
    linear = torch.nn.Linear(576, 1536, bias=False)
    x = torch.randn(1, 576, device=device, dtype=torch.bfloat16)
    w = linear.weight.detach().to(device, torch.bfloat16)
    int8 = Int8WeightOnlyLinear.from_linear(linear).to(device)
    w8a8 = Int8DynamicLinear.from_linear(linear).to(device)
    int4 = Int4WeightOnlyLinear.from_linear(linear, 64).to(device)
    dequant = (int8.weight_int8, int8.scales)
    calls = {
        "bf16_linear": lambda: F.linear(x, w),
        "int8_weight_only_kernel": lambda: int8(x),
        "int8_dequant_then_linear": lambda: F.linear(x, dequant[0].to(x.dtype)) * dequant[1],
        "w8a8_int_mm_padded": lambda: w8a8(x),
        "int4_tinygemm_g64": lambda: int4(x),
    }
    times = {}
    for name, call in calls.items():
        for _ in range(20):
            call()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(200):
            call()
        end.record()
        torch.cuda.synchronize()
        times[name] = round(start.elapsed_time(end) * 1e3 / 200, 2)
    return times


def build_random_model(config_dir: Path, target: Path, seed: int, smoke: bool) -> Path:
    """The config's architecture with seeded random weights (float32), saved
    with the tokenizer as a plain Hugging Face folder."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    config = AutoConfig.from_pretrained(config_dir)
    if smoke:
        for key, value in SMOKE_CONFIG.items():
            setattr(config, key, value)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.save_pretrained(target)
    AutoTokenizer.from_pretrained(config_dir).save_pretrained(target)
    return target


def load(plan: Plan, folder: Path, device: str, dtype: str):
    """The Load job's LoadedModel."""
    from core.jobs.load import LoadRequest, load

    return next(iter(load(LoadRequest(str(folder), device, dtype, plan.threads))))


def bench_request(plan: Plan, loaded=None):
    """The Bench job's request with the plan's protocol settings."""
    from core.jobs.bench import BenchRequest

    return BenchRequest(
        loaded,
        prompt_tokens=plan.prompt_tokens,
        new_tokens=plan.new_tokens,
        warmup=plan.warmup,
        min_repeats=plan.min_repeats,
        min_time_s=plan.min_time_s,
        max_repeats=plan.max_repeats,
    )


def bench(plan: Plan, loaded) -> tuple[dict, list[int]]:
    """The Bench job on ``loaded``: its figures, and the greedy tokens of the
    last timed run."""
    from core.jobs.bench import bench
    from core.measure.speed import BenchResult, RunTiming
    from core.runtime.torch_runner import TokenStep

    tokens: list[int] = []
    last: list[int] = []
    result = None
    for event in bench(bench_request(plan, loaded)):
        if isinstance(event, TokenStep):
            tokens.append(event.token_id)
        elif isinstance(event, RunTiming):
            last, tokens = tokens, []
        elif isinstance(event, BenchResult):
            result = event
    row = result.to_dict()
    env = row.pop("environment")
    row.pop("settings")
    row |= {"runner": env["runner"], "dtype": env["dtype"], "device_name": env["device_name"]}
    peak = result.peak_memory_bytes
    row["peak_mib"] = None if peak is None else round(peak / 2**20, 1)
    return row, last


def speed_summary(row: dict) -> str:
    peak = "not measured" if row["peak_mib"] is None else f"{row['peak_mib']:.0f} MiB"
    return (
        f"decode {row['decode_ms_per_token']:.3f} ms/token [p10 "
        f"{row['decode_ms_per_token_p10']:.3f}, p90 {row['decode_ms_per_token_p90']:.3f}], "
        f"{row['tokens_per_s']:.1f} tokens/s, prefill {row['prefill_ms']:.2f} ms, "
        f"peak {peak} ({row['peak_memory_kind']}), {row['runs']} runs"
    )


def random_windows(plan: Plan, vocab_size: int) -> list:
    import torch

    generator = torch.Generator().manual_seed(plan.seed + 1)
    return [
        torch.randint(0, vocab_size, (plan.window_tokens,), generator=generator)
        for _ in range(plan.windows)
    ]


def fidelity(plan: Plan, reference, candidate) -> dict:
    """core.evaluate.fidelity of ``candidate`` to ``reference`` (LoadedModels)."""
    from core.evaluate.fidelity import compute_fidelity

    windows = random_windows(plan, reference.model.config.vocab_size)
    result = compute_fidelity(reference.model, candidate.model, reference.tokenizer, windows)
    return {
        "top1_agreement": round(result.top1_agreement, 5),
        "mean_kl": result.mean_kl,
        "tokens": result.tokens,
        "windows": result.windows,
    }


def fidelity_summary(row: dict) -> str:
    return f"top-1 agreement {row['top1_agreement']:.2%}, mean KL {row['mean_kl']:.3g} nats"


def first_difference(a: list[int], b: list[int]) -> int | None:
    for i, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            return i
    return None if len(a) == len(b) else min(len(a), len(b))


@contextlib.contextmanager
def parked(loaded):
    """``loaded`` on the CPU for the block, so a timed candidate's allocator
    peak holds the candidate alone; back on its device after."""
    device = loaded.device
    loaded.model.to("cpu")
    free_memory()
    try:
        yield
    finally:
        loaded.model.to(device)


# ---------------------------------------------------------------- sections


def eager_row(plan: Plan, folder: Path, dtype: str, tokens_by_dtype: dict) -> dict:
    loaded = load(plan, folder, plan.device, dtype)
    row, tokens = bench(plan, loaded)
    tokens_by_dtype[dtype] = tokens
    row["greedy_tokens"] = tokens
    row["summary"] = speed_summary(row)
    return row


def dtype_fidelity_row(plan: Plan, folder: Path, reference: tuple, candidate: tuple) -> dict:
    """Fidelity of the model in ``candidate`` (device, dtype) to ``reference``."""
    ref = load(plan, folder, *reference)
    cand = load(plan, folder, *candidate)
    row = fidelity(plan, ref, cand)
    row["summary"] = fidelity_summary(row)
    return row


def family_row(plan: Plan, kind: str, workdir: Path) -> dict:
    """16 greedy tokens of a tiny random ``kind`` on the device (fp32) against the CPU's."""
    import torch

    from core.runtime.runners import steps_function
    from tests.tiny_models import save_tiny_model

    folder = save_tiny_model(kind, workdir / f"tiny-{kind}", seed=plan.seed)
    cpu = load(plan, folder, "cpu", "float32")
    dev = load(plan, folder, plan.device, "float32")
    prompt = cpu.tokenizer(FAMILY_PROMPT, return_tensors="pt").input_ids

    def greedy(loaded) -> list[int]:
        steps = steps_function(loaded.model, loaded.runner)
        ids = prompt.to(loaded.device)
        run = steps(loaded.model, ids, plan.family_tokens, stop_ids=frozenset())
        return [step.token_id for step in run]

    cpu_tokens, dev_tokens = greedy(cpu), greedy(dev)
    with torch.inference_mode():
        a = cpu.model(input_ids=prompt).logits.float()
        b = dev.model(input_ids=prompt.to(dev.device)).logits.float().cpu()
    row = {
        "equal": cpu_tokens == dev_tokens,
        "cpu_tokens": cpu_tokens,
        "device_tokens": dev_tokens,
        "prompt_max_abs_logit_diff": float((a - b).abs().max()),
    }
    where = first_difference(cpu_tokens, dev_tokens)
    verdict = "equal" if row["equal"] else "NOT equal"
    row["summary"] = (
        f"{plan.family_tokens} greedy tokens {plan.device} == cpu: {verdict}; "
        f"prompt logits max |diff| {row['prompt_max_abs_logit_diff']:.2e}"
    )
    if where is not None:
        # How close the CPU's own choice was there: a near tie explains a
        # difference of rounding; a wide margin means a wrong kernel.
        with torch.inference_mode():
            ids = torch.cat([prompt, torch.tensor([cpu_tokens[:where]], dtype=torch.long)], 1)
            top = cpu.model(input_ids=ids).logits[0, -1].float().topk(2).values
        row["first_difference"] = where
        row["cpu_top2_margin_there"] = float(top[0] - top[1])
        row["summary"] += (
            f"; first difference at token {where}, where the CPU's top-2 logits differ "
            f"by {row['cpu_top2_margin_there']:.2e}"
        )
    return row


def recipes(plan: Plan) -> list:
    """(name, Recipe) for every recipe checked on the device."""
    from core.passes.cast import CastConfig
    from core.passes.int4_weight_only import Int4WeightOnlyConfig
    from core.passes.int8_dynamic import Int8DynamicConfig
    from core.passes.int8_weight_only import Int8WeightOnlyConfig
    from core.passes.prune_layers import PruneLayersConfig
    from core.passes.prune_unstructured import PruneUnstructuredConfig
    from core.passes.recipe import Recipe

    configs = (
        ("int8 weight-only", Int8WeightOnlyConfig()),
        ("W8A8 (SmoothQuant)", Int8DynamicConfig()),
        ("int4 weight-only g128 RTN", Int4WeightOnlyConfig(group_size=128, method="rtn")),
        ("cast float16", CastConfig(dtype="float16")),
        ("cast bfloat16", CastConfig(dtype="bfloat16")),
        ("50% unstructured pruning", PruneUnstructuredConfig(sparsity=0.5)),
        (f"drop {plan.layers_dropped} layers", PruneLayersConfig(count=plan.layers_dropped)),
    )
    return [(name, Recipe((config,))) for name, config in configs]


def experiment_settings(plan: Plan, windows: int | None = None):
    """The Run job's settings with stdlib calibration text (the news data
    package is not on the GPU machine)."""
    from core.jobs.experiment import ExperimentSettings

    return ExperimentSettings(
        evaluate=False,
        calibration_windows=windows or plan.calibration_windows,
        calibration_length=plan.calibration_length,
        text_source="pydoc",
    )


def measure_candidate(plan: Plan, original, candidate, where: str) -> dict:
    """Bench ``candidate`` alone on the device, then its fidelity to ``original``."""
    row: dict = {}
    try:
        with parked(original):
            speed, _ = bench(plan, candidate)
        row["speed"] = speed
    except Exception as error:
        row["speed_error"] = f"failed on {where}: {describe_error(error)}"
    try:
        row["fidelity"] = fidelity(plan, original, candidate)
    except Exception as error:
        row["fidelity_error"] = f"failed on {where}: {describe_error(error)}"
    return row


def candidate_summary(row: dict) -> str:
    parts = [row.get("build_error", "")]
    if "speed" in row:
        parts.append(speed_summary(row["speed"]))
    parts.append(row.get("speed_error", ""))
    if "fidelity" in row:
        parts.append("vs bf16 base: " + fidelity_summary(row["fidelity"]))
    parts.append(row.get("fidelity_error", ""))
    return "; ".join(p for p in parts if p)


def recipe_row(plan: Plan, folder: Path, recipe, base_dtype: str = "bfloat16") -> dict:
    """Build ``recipe`` on the device as a Run does; measure it there. A
    quantizer that fails is also built on the CPU and moved to the device."""
    from core.jobs.experiment import build_compressed

    original = load(plan, folder, plan.device, base_dtype)
    row: dict = {"recipe": recipe.name, "base_dtype": base_dtype}
    try:
        compressed = build_compressed(original, recipe, experiment_settings(plan))
    except Exception as error:
        row["build_error"] = f"build failed on {plan.device}: {describe_error(error)}"
    else:
        row["notes"] = list(compressed.notes)
        row |= measure_candidate(plan, original, compressed.loaded, plan.device)
        del compressed
    failed = "build_error" in row or "speed_error" in row
    parts = [candidate_summary(row)]
    if failed and recipe.passes[0].kind == "quantize" and plan.device != "cpu":
        del original
        free_memory()
        row["built_on_cpu"] = cpu_built_row(plan, folder, recipe, base_dtype)
        parts.append("built on the CPU, moved to the device: " + row["built_on_cpu"]["summary"])
    row["summary"] = " | ".join(parts)
    return row


def cpu_built_row(plan: Plan, folder: Path, recipe, base_dtype: str) -> dict:
    """``recipe`` built on the CPU (where its build is meant to run), then
    moved to the device and measured there: which of build and kernel refuse."""
    from core.jobs.experiment import build_compressed

    try:
        on_cpu = load(plan, folder, "cpu", base_dtype)
        # Few calibration windows: this build only asks whether the kernel runs there.
        settings = experiment_settings(plan, min(4, plan.calibration_windows))
        compressed = build_compressed(on_cpu, recipe, settings)
        del on_cpu
        compressed.loaded.model.to(plan.device)
    except Exception as error:
        row = {"build_error": f"build on the CPU failed: {describe_error(error)}"}
    else:
        original = load(plan, folder, plan.device, base_dtype)
        row = measure_candidate(plan, original, compressed.loaded, plan.device)
    row["summary"] = candidate_summary(row)
    return row


def compiled_row(plan: Plan, folder: Path, dtype: str, tokens_by_dtype: dict) -> dict:
    """torch.compile's decode (core.jobs.on_runtime.prepare, as a Run on
    'torch-compile'), timed by the Bench job; its greedy tokens against eager's."""
    from core.jobs.on_runtime import prepare
    from core.runtime.compiled_runner import release_compiled

    loaded = load(plan, folder, plan.device, dtype)
    try:
        prepared = prepare(loaded, "torch-compile", plan.prompt_tokens + plan.new_tokens)
        row, tokens = bench(plan, prepared.loaded)
    finally:
        release_compiled()
    row["compile_s"] = prepared.artifact.get("compile_s")
    row["greedy_tokens"] = tokens
    eager = tokens_by_dtype.get(dtype)
    row["greedy_equals_eager"] = None if eager is None else tokens == eager
    where = None if eager is None else first_difference(tokens, eager)
    same = {None: "eager not measured", True: "yes", False: f"no, first at token {where}"}
    row["summary"] = (
        f"compiled in {row['compile_s']} s; {speed_summary(row)}; greedy tokens equal "
        f"eager's: {same[row['greedy_equals_eager']]}"
    )
    return row


# ---------------------------------------------------------------- the run


def run_checks(plan: Plan, report: Report, workdir: Path) -> dict:
    """Every section in order of importance (compiling, the slowest, last)."""
    import transformers

    from core.runtime.device import set_threads

    set_threads(plan.threads)
    transformers.utils.logging.disable_progress_bar()  # one line per figure, no bars
    say = report.say
    say(f"GPU checks on {plan.device}: {LABEL}")
    report.data["bench_protocol"] = bench_request(plan).lm_settings().describe()
    say(f"  bench protocol: {report.data['bench_protocol']}")
    if "env" in plan.sections:
        try:
            report.data["environment"] = environment(plan.device)
        except Exception as error:
            report.data["environment"] = {"error": describe_error(error)}
        say("  " + json.dumps(report.data["environment"]))
    try:
        ort = ort_on_cuda()["on_cuda"] if plan.device != "cpu" else "not asked (cpu)"
    except Exception as error:  # a broken onnxruntime install
        ort = f"not measurable on this machine ({describe_error(error)})"
    report.data["ort_on_cuda"] = ort
    say(f"  ONNX Runtime on CUDA: {ort}")
    if plan.device != "cpu":
        try:
            report.data["kernels"] = kernel_probes(plan.device)
        except Exception as error:
            report.data["kernels"] = {"error": describe_error(error)}
        say("  kernels: " + json.dumps(report.data["kernels"]))

    folder = workdir / "model"
    start = time.perf_counter()
    try:
        build_random_model(MODEL_CONFIG_DIR, folder, plan.seed, plan.smoke)
    except Exception as error:  # only the families need no model: run those alone
        report.data["model_error"] = describe_error(error)
        say(f"  the model could not be built: {report.data['model_error']}")
        kept = tuple(s for s in plan.sections if s in ("env", "families"))
        for name in set(plan.sections) - set(kept):
            report.data["skipped"].append(f"{name}: the model could not be built")
        plan = report.plan = Plan(**{**asdict(plan), "sections": kept})
    else:
        report.data["model_build_s"] = seconds = round(time.perf_counter() - start, 1)
        say(f"  random model built from {MODEL_CONFIG_DIR.name}/ in {seconds} s")
    tokens_by_dtype: dict[str, list[int]] = {}
    device = plan.device

    def eager():
        for dtype in DTYPES:
            report.item(
                "eager",
                SHORT[dtype],
                lambda d=dtype: eager_row(plan, folder, d, tokens_by_dtype),
                min_s=10,
            )

    def fidelities():
        for dtype in ("bfloat16", "float16"):
            report.item(
                "fidelity",
                f"{SHORT[dtype]} vs fp32 on {device}",
                lambda d=dtype: dtype_fidelity_row(plan, folder, (device, "float32"), (device, d)),
                min_s=5,
            )
        report.item(
            "fidelity",
            f"fp32 on {device} vs fp32 on cpu",
            lambda: dtype_fidelity_row(plan, folder, ("cpu", "float32"), (device, "float32")),
            min_s=5,
        )

    def families():
        for kind in FAMILIES:
            report.item("families", kind, lambda k=kind: family_row(plan, k, workdir), min_s=3)

    def recipe_rows():
        for name, recipe in recipes(plan):
            report.item("recipes", name, lambda r=recipe: recipe_row(plan, folder, r), min_s=15)

    def compiled(dtypes):
        for dtype in dtypes:
            report.item(
                "compiled",
                SHORT[dtype],
                lambda d=dtype: compiled_row(plan, folder, d, tokens_by_dtype),
                min_s=45,
            )

    # The default dtype's compile before the recipes, the other dtypes' last:
    # compiling is the slowest item and the first to go when time runs short.
    first, rest = plan.compile_dtypes[:1], plan.compile_dtypes[1:]
    order = [
        ("eager", eager),
        ("fidelity", fidelities),
        ("families", families),
        ("compiled", lambda: compiled(first)),
        ("recipes", recipe_rows),
    ]
    if rest:
        order.append(("compiled", lambda: compiled(rest)))
    for name, body in order:
        report.section(name, body)
    report.data["elapsed_s"] = round(report.budget.elapsed(), 1)
    return report.data


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda", help="cuda (the GPU machine) or cpu")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes and repeats (CPU test)")
    parser.add_argument("--budget-s", type=float, default=420.0, help="wall-clock budget")
    parser.add_argument(
        "--sections",
        default=",".join(SECTIONS),
        help=f"comma-separated subset of {','.join(SECTIONS)}",
    )
    parser.add_argument(
        "--compile-dtypes",
        default=None,
        help="dtypes to compile, comma-separated (default: all three; --smoke: float32)",
    )
    threads = os.environ.get("OMP_NUM_THREADS")
    parser.add_argument(
        "--threads",
        type=int,
        default=int(threads) if threads and threads.isdigit() else None,
        help="torch CPU threads (default: OMP_NUM_THREADS, else every usable CPU)",
    )
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    sections = tuple(s.strip() for s in args.sections.split(",") if s.strip())
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        print(f"unknown section(s) {', '.join(sorted(unknown))}; choose from {SECTIONS}")
        return 2
    compile_dtypes = None
    if args.compile_dtypes:
        compile_dtypes = tuple(d.strip() for d in args.compile_dtypes.split(","))
        if set(compile_dtypes) - set(DTYPES):
            print(f"--compile-dtypes takes {', '.join(DTYPES)}")
            return 2
    plan = make_plan(args.device, args.smoke, args.budget_s, args.threads, sections, compile_dtypes)
    out = os.environ.get("OUT")
    report = Report(plan, Budget(plan.budget_s), Path(out) / "gpu_checks.json" if out else None)
    workdir = Path(tempfile.mkdtemp(prefix="gpu-checks-"))
    # Converted models, the ONNX cache and run stores never land in the user's folders.
    os.environ.setdefault("WORKBENCH_CACHE_DIR", str(workdir / "cache"))
    os.environ.setdefault("WORKBENCH_DATA_DIR", str(workdir / "data"))
    try:
        run_checks(plan, report, workdir)
    except Exception as error:  # setup (imports, the model build) failed: say so in the JSON
        report.data["error"] = describe_error(error)
        report.say(f"stopped: {report.data['error']}")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    report.save()
    report.say(f"done in {report.budget.elapsed():.1f} s; skipped: {len(report.data['skipped'])}")
    print(json.dumps(compact(report.data), default=str), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
