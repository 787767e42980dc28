"""What every command shares: the model and runtime arguments, progress
lines on stderr, and loading a model through the Load job."""

from __future__ import annotations

import argparse
import sys

from core.cli import args as cli_args
from core.progress import Progress
from core.runtime.registry import RUNTIMES

EXIT_BAD_INPUT = 2


def add_model_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model",
        "-m",
        default="default",
        type=cli_args.model_source,
        help="'default' (embedded SmolLM2-135M-Instruct), 'demo-classifier' (the MiniLM "
        "sentiment classifier, once `workbench train-classifier` prepared it), a local HF "
        "folder, or a hub id",
    )
    parser.add_argument(
        "--device",
        default="auto",
        type=cli_args.device,
        help="auto, cpu, cuda or cuda:N (default: auto)",
    )
    parser.add_argument(
        "--dtype",
        default="auto",
        choices=["auto", "float32", "bfloat16", "float16"],
        help="weights dtype (auto: float32 on CPU, bf16/fp16 on CUDA)",
    )
    parser.add_argument(
        "--threads",
        type=cli_args.threads,
        default=None,
        help="CPU threads (default: all usable); auto: chosen by a short measured sweep, "
        "once per machine, model and runtime, and remembered",
    )


def add_runtime_args(parser: argparse.ArgumentParser) -> None:
    """``--backend``: a key of the runtime registry (the window's Run on
    choices and a run's recorded backend use the same words)."""
    parser.add_argument(
        "--backend",
        default="torch",
        choices=list(RUNTIMES),
        help="where the model runs: "
        + "; ".join(f"{key}: {runtime.label}" for key, runtime in RUNTIMES.items()),
    )
    parser.add_argument(
        "--int8",
        action="store_true",
        help="with --backend ort: the same as --backend ort-int8 (kept for old scripts)",
    )


def runtime_key(args) -> str:
    """The runtime ``args`` name (``--backend ort --int8`` is ``ort-int8``)."""
    backend = getattr(args, "backend", "torch")
    if getattr(args, "int8", False):
        if backend not in ("ort", "ort-int8"):
            raise ValueError("--int8 needs --backend ort")
        return "ort-int8"
    return backend


_last_stage = [""]  # the stage printed last: a pass reports each layer under one stage


def progress(event: Progress) -> None:
    """A stage on stderr once, however many fractions of it are reported
    ("[Compressing]" came once per layer)."""
    if event.stage != _last_stage[0]:
        _last_stage[0] = event.stage
        print(f"[{event.stage}]", file=sys.stderr, flush=True)


def note(text: str) -> None:
    print(f"[{text}]", file=sys.stderr, flush=True)


def load(args, runtime: str | None = None):
    """The model ``args`` name, through the Load job, on ``runtime`` (default:
    the runtime ``args`` name)."""
    from core.jobs.load import LoadRequest
    from core.jobs.load import load as load_job

    dtype = None if args.dtype == "auto" else args.dtype
    chosen = runtime or runtime_key(args)
    # --threads auto is swept on the runtime the command measures on
    swept_on = getattr(args, "run_on", None) or chosen
    request = LoadRequest(args.model, args.device, dtype, args.threads, chosen, sweep_on=swept_on)
    (loaded,) = load_job(request, progress)
    if args.threads == "auto":  # the Load job chose it: every later request uses that
        import torch

        args.threads = torch.get_num_threads()
    return loaded
