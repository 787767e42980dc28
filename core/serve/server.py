"""uvicorn on a socket we bind ourselves, in a thread of its own.

Binding first lets the Serve job refuse a busy port in one line before it
builds the model, and gives the real port when 0 (any free port) is asked.
uvicorn runs off the main thread, so it installs no signal handlers: the
job stops it (``should_exit``) when its CancelToken is set.
"""

from __future__ import annotations

import ipaddress
import re
import socket
import sys
import threading
import time

from core.errors import WorkbenchError

_HOSTNAME = re.compile(r"(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,62})(\.[A-Za-z0-9-]{1,63})*")
STARTUP_TIMEOUT_S = 30.0
GRACEFUL_SHUTDOWN_S = 5


class ServeError(WorkbenchError):
    """The server cannot listen where it was asked to."""


def check_host(host: str) -> str:
    """An IP address or a host name; anything else is refused in one line."""
    try:
        ipaddress.ip_address(host)
        return host
    except ValueError:
        pass
    if not _HOSTNAME.fullmatch(host):
        raise ValueError(f"--host must be an IP address or a host name, got {host!r}")
    return host


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def bind_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host``:``port`` (not yet listening)."""
    check_host(host)
    if not 0 <= port <= 65535:
        raise ValueError(f"the port must be between 0 and 65535, got {port}")
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except socket.gaierror as err:
        raise ServeError(f"cannot resolve host {host!r}: {err.strerror}") from None
    sock = socket.socket(family, kind, proto)
    if sys.platform != "win32":  # a quick restart reuses the port (TIME_WAIT)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as err:
        sock.close()
        raise ServeError(f"cannot listen on {host}:{port}: {err.strerror}") from None
    sock.set_inheritable(False)
    return sock


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}"


class RunningServer:
    """uvicorn serving ``app`` on ``sock`` in a daemon thread."""

    def __init__(self, app, sock: socket.socket) -> None:
        import uvicorn

        config = uvicorn.Config(
            app,
            lifespan="on",
            log_level="warning",
            access_log=False,  # the job reports each request itself
            timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
        )
        self.server = uvicorn.Server(config)
        self._failure: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(sock,), name="serve-http")
        self._thread.daemon = True
        self._thread.start()
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while not self.server.started:  # bound already: only the app's startup is awaited
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise ServeError(f"the HTTP server did not start ({self._failure!r})")
            self._thread.join(0.02)

    def _run(self, sock) -> None:
        try:
            self.server.run(sockets=[sock])
        except BaseException as err:  # uvicorn exits with SystemExit when startup fails
            self._failure = err

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def stop(self, timeout_s: float = GRACEFUL_SHUTDOWN_S + 5) -> None:
        """Stop accepting, let answers in flight finish, and wait for the thread."""
        self.server.should_exit = True
        self._thread.join(timeout_s)
        if self._thread.is_alive():  # a connection that would not close
            self.server.force_exit = True
            self._thread.join(timeout_s)
