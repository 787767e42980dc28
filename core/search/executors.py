"""Where proxy scores are computed: in this process (on the model already
loaded), in a local pool of worker processes (spawned: each loads the model
once), or as Ray tasks on a cluster. All three hand back the same
``(index, ProxyScore | ProxyFailure)`` pairs as they complete, honour the
cancel token, and time nothing: speed is measured only by the search job,
on this machine, one configuration at a time, never while proxies run.
"""

from __future__ import annotations

import time

from core.errors import Cancelled
from core.progress import CancelToken

POLL_S = 0.2  # how often a waiting executor looks at the cancel token and the deadline


class DeadlineReached(Exception):
    """The search's time budget ran out while proxies were being scored."""


def _check(cancel: CancelToken, deadline: float | None) -> None:
    cancel.raise_if_cancelled()
    if deadline is not None and time.monotonic() >= deadline:
        raise DeadlineReached


class InProcessExecutor:
    """One recipe after another on the loaded model: no second copy of the
    model, no start-up; what a small machine should use."""

    def __init__(self, scorer_factory) -> None:
        self._factory = scorer_factory  # built lazily: the reference logits cost a pass
        self._scorer = None
        self.description = "in this process, one candidate at a time"

    def scorer(self):
        if self._scorer is None:
            self._scorer = self._factory()
        return self._scorer

    def score(self, recipes: list[dict], cancel: CancelToken, deadline: float | None = None):
        for index, recipe in enumerate(recipes):
            _check(cancel, deadline)
            yield index, self.scorer().score(recipe, cancel)

    def close(self) -> None:
        self._scorer = None


def end_with_parent() -> None:
    """A pool worker's first act: on Linux, ask the kernel to end it when the
    process that started it dies. A parent killed mid-search (SIGKILL) left
    its workers running on for seconds, each printing a BrokenPipeError
    traceback; with a big model they would have scored on, unseen. SIGTERM
    ends a Python process without a word. (Elsewhere: as before.)"""
    import ctypes
    import signal
    import sys

    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # 1: PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass  # no such libc: the worker ends when its pipe breaks, as before


class PoolExecutor:
    """``workers`` spawned processes (spawn: a forked copy of a process that
    runs torch threads can deadlock), started at the first batch; each loads
    the model once and keeps it for the next recipes."""

    def __init__(self, spec, workers: int) -> None:
        if workers < 1:
            raise ValueError("workers must be at least 1")
        self.spec, self._workers, self._pool = spec, workers, None
        self.description = f"{workers} local worker processes"

    def score(self, recipes: list[dict], cancel: CancelToken, deadline: float | None = None):
        import multiprocessing

        from core.search.proxy import score_in_worker

        _check(cancel, deadline)
        if self._pool is None:
            context = multiprocessing.get_context("spawn")
            self._pool = context.Pool(self._workers, initializer=end_with_parent)
        pending = [
            self._pool.apply_async(score_in_worker, (self.spec, i, recipe))
            for i, recipe in enumerate(recipes)
        ]
        try:
            while pending:
                _check(cancel, deadline)
                done = [p for p in pending if p.ready()]
                for result in done:
                    _check(cancel, deadline)  # a cancel while the caller held the last one
                    pending.remove(result)
                    yield result.get()
                if not done:
                    time.sleep(POLL_S)
        except (Cancelled, DeadlineReached):
            self.close()  # the only way to stop a running task: end its process
            raise

    def close(self) -> None:
        if self._pool is not None:
            self._pool.terminate()
            self._pool.join()
            self._pool = None


class RayExecutor:
    """Ray tasks, one CPU each, on the cluster at ``address`` ("auto": the
    cluster this machine belongs to, as `ray start` or RAY_ADDRESS set it
    up). A Ray session already started in this process (a test's local
    cluster) is used as it is. Each Ray worker loads the model from
    ``ProxySpec.source``: a folder must exist at that path on every node
    (or be a hub id they can fetch); the default model ships with the
    package."""

    def __init__(self, spec, address: str) -> None:
        try:
            import ray
        except ImportError:
            raise ValueError(
                "Ray is not installed: pip install 'compression-workbench[cluster]'"
            ) from None
        self.spec, self._ray = spec, ray
        self._owns_session = not ray.is_initialized()
        if self._owns_session:
            check_reachable(address)
            try:
                ray.init(address=address, logging_level="ERROR", log_to_driver=False)
            except (ConnectionError, RuntimeError, ValueError) as err:
                first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
                raise ValueError(
                    f"no Ray cluster at {address!r} ({first[:200]}); start one with "
                    "`ray start --head` or give its address"
                ) from None
        cpus = int(ray.cluster_resources().get("CPU", 0))
        self.description = f"Ray tasks on a cluster of {cpus} CPUs"
        from core.search.proxy import score_in_worker

        self._remote = ray.remote(num_cpus=1, max_retries=0)(score_in_worker)

    def score(self, recipes: list[dict], cancel: CancelToken, deadline: float | None = None):
        ray = self._ray
        spec = ray.put(self.spec)
        pending = [self._remote.remote(spec, i, recipe) for i, recipe in enumerate(recipes)]
        try:
            while pending:
                _check(cancel, deadline)
                done, pending = ray.wait(pending, num_returns=1, timeout=POLL_S)
                for ref in done:
                    yield ray.get(ref)
        except (Cancelled, DeadlineReached):
            for ref in pending:
                ray.cancel(ref, force=True)
            raise

    def close(self) -> None:
        if self._owns_session:
            self._ray.shutdown()


def check_reachable(address: str, timeout_s: float = 5.0) -> None:
    """Refuse a HOST:PORT nothing answers on, at once: ray.init waits for a
    cluster there far longer than a person would (minutes, measured)."""
    import socket

    if address == "auto" or "://" in address:
        return  # Ray's own lookup, or Ray Client: it fails fast by itself
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"a Ray address is 'auto', HOST:PORT or ray://HOST:PORT, got {address!r}")
    try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
    except OSError as err:
        raise ValueError(
            f"no Ray cluster at {address!r} ({err.strerror or err}); start one with "
            "`ray start --head` or give its address"
        ) from None


def make_executor(ray_address: str | None, workers: int | None, spec, scorer_factory):
    """Ray when an address is given; else ``workers`` local processes; else
    (None or 1) this process. The search job decides the default."""
    if ray_address:
        return RayExecutor(spec, ray_address)
    if workers and workers > 1:
        return PoolExecutor(spec, workers)
    return InProcessExecutor(scorer_factory)


def default_workers(cpus: int) -> int:
    """Local proxy workers when none are asked for: one per 4 CPUs when
    there are at least 8 (a worker holds its own copy of the model and
    needs cores of its own to help); this process alone otherwise. On a
    2-core machine a second process only halves each one's cores."""
    return cpus // 4 if cpus >= 8 else 1


__all__ = [
    "DeadlineReached",
    "InProcessExecutor",
    "PoolExecutor",
    "RayExecutor",
    "default_workers",
    "make_executor",
]
