"""The Load job: a model from the default, a folder, a hub id or an export,
optionally put on a runtime (compiled, or exported and opened in ONNX
Runtime) for the CLI's bench, eval and generate."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass

from core.progress import CancelToken, ProgressSink, ignore_progress


@dataclass(frozen=True)
class LoadRequest:
    source: str
    device: str = "auto"
    dtype: str | None = None  # None: float32 on the CPU, bf16/fp16 on CUDA
    threads: int | str | None = None  # "auto": chosen by measurement (core.jobs.threads)
    runtime: str = "torch"  # a key of core.runtime.registry.RUNTIMES
    # Import what a Run needs now, on the job's thread: a first import holds
    # the GIL for a long stretch and would freeze the window mid-run.
    preimport: bool = False
    sweep_on: str = ""  # threads "auto": the runtime to sweep on (default: ``runtime``)


def load(
    request: LoadRequest,
    progress: ProgressSink = ignore_progress,
    cancel: CancelToken | None = None,
) -> Iterator[object]:
    """Yield the LoadedModel (on the asked runtime, if it is not PyTorch eager)."""
    from core.jobs.on_runtime import prepare
    from core.jobs.threads import AUTO, auto_threads
    from core.models.loading import load_model
    from core.runtime.device import set_threads
    from core.runtime.registry import check_supports, runtime
    from core.runtime.runners import COMPILED_RUNNER, is_onnx_runtime

    chosen = runtime(request.runtime)  # refuse an unknown runtime before loading
    auto = request.threads == AUTO
    set_threads(None if auto else request.threads)
    loaded = load_model(request.source, request.device, request.dtype, progress, cancel)
    if auto:  # before an ONNX Runtime session opens: it takes torch's count
        auto_threads(loaded, request.sweep_on or chosen.key, progress, cancel)
    if is_onnx_runtime(loaded.model):  # a loaded graph runs as it was built
        from core.jobs.loaded_graph import graph_run_refusal

        if refusal := graph_run_refusal(loaded.model, loaded.source, None, chosen.key):
            from core.errors import UnsupportedModelError

            raise UnsupportedModelError(refusal)
    elif chosen.key != "torch":
        check_supports(chosen.key, loaded.task)
        if chosen.compiled:  # compiled before anything is timed, for the length timed
            loaded = dataclasses.replace(loaded, runner=COMPILED_RUNNER)
        else:
            loaded = prepare(loaded, chosen.key, 0, progress, cancel).loaded
    if request.preimport:  # everything a first Run imports, here rather than mid-run
        import core.evaluate.fidelity  # noqa: F401
        import core.evaluate.health  # noqa: F401
        import core.evaluate.perplexity  # noqa: F401
        import core.jobs.experiment  # noqa: F401
        import core.jobs.on_runtime  # noqa: F401
        import core.jobs.provenance  # noqa: F401
        import core.jobs.run  # noqa: F401
        import core.jobs.tasks.causal_lm  # noqa: F401
        import core.jobs.tasks.classifier  # noqa: F401
        import core.models.size  # noqa: F401
    yield loaded
