"""One thread owns the model; requests wait for it in a bounded queue.

The model runs one generation at a time (batch 1: our token loop), so
requests are queued rather than run side by side; a full queue is refused at
once (429) instead of letting waits grow without bound. The thread counts
the tokens it generates, for the live tokens/s figure.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from dataclasses import replace

from core.serve.generation import Failed, Finished, GenerationJob, Token

SHUTTING_DOWN = "the server is shutting down"


class QueueFull(Exception):
    pass


class Engine:
    def __init__(self, generate: Callable[[GenerationJob], None], capacity: int) -> None:
        self._generate = generate
        self.capacity = capacity
        self._queue: queue.Queue = queue.Queue(maxsize=capacity)
        self._lock = threading.Lock()
        self._current: GenerationJob | None = None
        self._stopping = False
        self.generated_tokens = 0
        self._thread = threading.Thread(target=self._run, name="serve-model", daemon=True)
        self._thread.start()

    @property
    def queue_depth(self) -> int:
        """Requests waiting for the model (not the one generating)."""
        return self._queue.qsize()

    @property
    def generating(self) -> bool:
        return self._current is not None

    @property
    def healthy(self) -> bool:
        """Taking requests, and the model thread is alive."""
        return not self._stopping and self._thread.is_alive()

    def submit(self, job: GenerationJob) -> None:
        """Queue ``job``; QueueFull when ``capacity`` jobs already wait."""
        with self._lock:
            if self._stopping:
                raise QueueFull(SHUTTING_DOWN)
            try:
                self._queue.put_nowait(job)
            except queue.Full:
                raise QueueFull(f"{self.capacity} requests are already waiting") from None

    def stop(self, timeout_s: float = 10.0) -> None:
        """Refuse new jobs, cancel the running one, answer the waiting ones 503."""
        with self._lock:
            if self._stopping:  # stopped already (the server's shutdown after the job's)
                return
            self._stopping = True
            current = self._current
        if current is not None:
            current.cancel.cancel()
        while True:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                break
            if job is not None:
                job.emit(Failed(503, SHUTTING_DOWN))
        self._queue.put(None)  # room is certain: the queue was just emptied
        self._thread.join(timeout_s)

    def _run(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            if job.cancel.cancelled:  # its client left while it waited
                job.emit(Finished(0, "cancelled"))
                continue
            with self._lock:
                if self._stopping:
                    job.emit(Failed(503, SHUTTING_DOWN))
                    continue
                self._current = job
            try:
                self._generate(replace(job, emit=self._counting(job.emit)))
            except Exception as err:  # a bug or a broken model: that request gets a 500
                job.emit(Failed(500, f"generation failed: {type(err).__name__}: {err}"))
            finally:
                self._current = None

    def _counting(self, emit: Callable[[object], None]) -> Callable[[object], None]:
        def counted(event) -> None:
            if isinstance(event, Token):
                self.generated_tokens += event.tokens  # only this thread writes it
            emit(event)

        return counted
