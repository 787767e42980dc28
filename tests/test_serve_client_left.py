"""A client that leaves before its whole (not streamed) answer, or while
its request still waits in the queue, stops costing the model thread: a
sweep found both running to max_tokens for nobody and logged as 200. On a
real port, since the in-process test client cannot hang up."""

from __future__ import annotations

import json
import socket
import threading
import time

from core.serve.app import create_app
from core.serve.engine import Engine
from core.serve.generation import Finished, Token
from core.serve.server import RunningServer, url_of
from tests.test_serve import LIMITS, TOKEN

STEP_S = 0.01


def _slow_answers(started: list, ended: list):
    """Stands in for the model: a token every 10 ms, up to 20 s, until cancelled."""

    def generate(job):
        started.append(time.monotonic())
        count = 0
        while not job.cancel.cancelled and count < 2000:
            time.sleep(STEP_S)
            count += 1
            job.emit(Token("x"))
        ended.append((time.monotonic(), count))
        job.emit(Finished(count, "cancelled" if job.cancel.cancelled else "length"))

    return generate


def _post_and_hang_up(url: str, after_s: float) -> None:
    host, port = url.removeprefix("http://").split(":")
    body = json.dumps({"prompt": "Hello", "max_tokens": 16}).encode()
    head = (
        f"POST /v1/completions HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {TOKEN}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    with socket.create_connection((host, int(port))) as connection:
        connection.sendall(head.encode() + body)
        time.sleep(after_s)


def test_a_whole_answer_and_a_queued_one_stop_when_their_clients_leave(tiny_llama_dir):
    from core.models.loading import load_model
    from core.serve.served_model import serve_model

    served = serve_model(load_model(str(tiny_llama_dir), device="cpu"), "tiny", LIMITS)
    started, ended, answered = [], [], []
    engine = Engine(_slow_answers(started, ended), capacity=4)
    app = create_app(served, TOKEN, LIMITS, engine=engine, on_served=answered.append)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    server = RunningServer(app, listener)
    try:
        url = url_of(listener)
        first = threading.Thread(target=_post_and_hang_up, args=(url, 0.5))
        first.start()
        time.sleep(0.2)  # the second waits in the queue behind the first
        _post_and_hang_up(url, 0.1)
        first.join()
        deadline = time.monotonic() + 10
        while len(answered) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        server.stop()
        engine.stop()
    # the first stopped within a second of its client leaving, far from its 2000 tokens
    assert ended and ended[0][1] < 200
    assert len(started) == 1  # the queued one never took the model thread
    assert sorted(e.status for e in answered) == [499, 499]
