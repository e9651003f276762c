"""A bounded HTTP server for Prometheus' ``/metrics``: one thread, whatever
the number of clients.

``prometheus_client.start_http_server`` gives every connection a thread
with no timeout and no cap, so idle connections to it held a thread each
(issue 24: 974 threads, then no file descriptors left for gRPC calls).
This one runs a selector loop on a single thread, and bounds everything a
client can make it hold:

    connections        ``max_connections`` (default 16) at a time; beyond
                       it a new connection takes the place of the oldest one
                       that has not sent its whole request head yet, else of
                       the oldest whose answer has been stuck for a second
                       (a client that does not read), else it is closed at
                       once
    request head       ``max_request_bytes`` (default 8 KiB), answered 431
    time for the head  ``header_timeout`` (default 5 s) from the connection,
                       then closed: an idle client costs one descriptor for
                       at most that long
    time for the reply ``write_timeout`` (default 10 s), then closed

One request per connection (``Connection: close``).  ``GET`` or ``HEAD`` of
``/metrics`` (or ``/``) answers the registry in the format the ``Accept``
header asks for, gzipped if ``Accept-Encoding`` allows, ``name[]=`` query
arguments selecting families, as ``prometheus_client`` does.  The registry
is collected on the server's thread, one scrape at a time.
"""

from __future__ import annotations

import collections
import copy
import gzip
import logging
import selectors
import socket
import threading
import time
from typing import Any
from urllib.parse import parse_qs, urlsplit

__all__ = ["DEFAULT_HEADER_TIMEOUT", "DEFAULT_MAX_CONNECTIONS", "DEFAULT_MAX_REQUEST_BYTES",
           "DEFAULT_WRITE_TIMEOUT", "MetricsServer"]

DEFAULT_MAX_CONNECTIONS = 16
DEFAULT_HEADER_TIMEOUT = 5.0
DEFAULT_WRITE_TIMEOUT = 10.0
DEFAULT_MAX_REQUEST_BYTES = 8192
_ACCEPTS_PER_TURN = 256  # a connect flood still lets the loop serve the others
_STUCK = 1.0  # seconds an answer may take before a new connection may replace it
_ACCEPT_PAUSE = 0.5  # seconds without accepting after accept() failed (EMFILE)
_PATHS = ("/metrics", "/")

_log = logging.getLogger("pygrpc_ffi.metrics")


class _Connection:
    """One client: its request head so far, then its answer."""

    __slots__ = ("deadline", "head", "out", "sock", "writing")

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        self.sock = sock
        self.head = bytearray()
        self.out = memoryview(b"")
        self.deadline = deadline
        self.writing = False


def _response(status: str, headers: list[tuple[str, str]], body: bytes,
              send_body: bool = True) -> bytes:
    lines = [f"HTTP/1.1 {status}", *(f"{k}: {v}" for k, v in headers),
             f"Content-Length: {len(body)}", "Connection: close", "", ""]
    return "\r\n".join(lines).encode("latin-1") + (body if send_body else b"")


def _plain(status: str, text: str) -> bytes:
    return _response(status, [("Content-Type", "text/plain; charset=utf-8")],
                     text.encode() + b"\n")


class MetricsServer:
    """Serves ``registry`` on ``host:port`` from one daemon thread until
    :meth:`shutdown`.  ``port`` 0 picks a free port (see :attr:`port`)."""

    def __init__(self, registry: Any, host: str = "0.0.0.0", port: int = 0, *,
                 max_connections: int = DEFAULT_MAX_CONNECTIONS,
                 header_timeout: float = DEFAULT_HEADER_TIMEOUT,
                 write_timeout: float = DEFAULT_WRITE_TIMEOUT,
                 max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES) -> None:
        if max_connections < 1 or header_timeout <= 0 or write_timeout <= 0 \
                or max_request_bytes < 64:
            raise ValueError("metrics server limits must be positive "
                             "(max_request_bytes at least 64)")
        self.registry = registry
        self.max_connections = max_connections
        self.header_timeout = header_timeout
        self.write_timeout = write_timeout
        self.max_request_bytes = max_request_bytes
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                    flags=socket.AI_PASSIVE)[0][0]
        self._listener = socket.create_server((host, port), family=family, backlog=128)
        self._listener.setblocking(False)
        self.port: int = self._listener.getsockname()[1]
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._listener, selectors.EVENT_READ, "accept")
        self._selector.register(self._wake_r, selectors.EVENT_READ, "wake")
        # fd -> connection, oldest first (deadlines are in this order too,
        # per state, since each state's timeout is fixed).
        self._reading: collections.OrderedDict[int, _Connection] = collections.OrderedDict()
        self._writing: collections.OrderedDict[int, _Connection] = collections.OrderedDict()
        self._accept_resume: float | None = None  # accepting paused until then
        self._stopping = False
        self.thread = threading.Thread(target=self._run, name="pgf-metrics", daemon=True)
        self.thread.start()

    # -------------------------------------------------------------- public

    @property
    def connections(self) -> int:
        """Connections held now (reading their request or being answered)."""
        return len(self._reading) + len(self._writing)

    def shutdown(self) -> None:
        """Stops the thread and closes every socket; idempotent."""
        self._stopping = True
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass
        if self.thread is not threading.current_thread():
            self.thread.join()

    # ---------------------------------------------------------------- loop

    def _run(self) -> None:
        try:
            while not self._stopping:
                events = self._selector.select(self._timeout())
                accept = False
                for key, _ in events:
                    if key.data == "accept":
                        accept = True
                    elif key.data == "wake":
                        self._drain_wake()
                    elif key.fd in self._reading or key.fd in self._writing:
                        self._ready(key.data)
                # Requests already in count before new connections, which
                # may push out the oldest reader.
                now = time.monotonic()
                if self._accept_resume is not None and now >= self._accept_resume:
                    self._accept_resume = None
                    self._selector.register(self._listener, selectors.EVENT_READ, "accept")
                if accept:
                    self._accept()
                self._expire(now)
        except Exception:  # never expected; the endpoint is down, not the process
            _log.exception("metrics server stopped")
        finally:
            self._close_all()

    def _timeout(self) -> float | None:
        deadlines = [conns[next(iter(conns))].deadline
                     for conns in (self._reading, self._writing) if conns]
        if self._accept_resume is not None:
            deadlines.append(self._accept_resume)
        if not deadlines:
            return None
        return max(0.0, min(deadlines) - time.monotonic())

    def _drain_wake(self) -> None:
        try:
            while self._wake_r.recv(64):
                pass
        except OSError:
            pass

    def _accept(self) -> None:
        for _ in range(_ACCEPTS_PER_TURN):
            try:
                sock, _ = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # EMFILE and the like: pause, never spin
                _log.warning("metrics server cannot accept: %s", exc)
                self._selector.unregister(self._listener)
                self._accept_resume = time.monotonic() + _ACCEPT_PAUSE
                return
            if self.connections >= self.max_connections:
                victim = self._victim()
                if victim is None:
                    sock.close()  # every slot is being answered, none stuck
                    continue
                self._close(victim)
            sock.setblocking(False)
            conn = _Connection(sock, time.monotonic() + self.header_timeout)
            self._reading[sock.fileno()] = conn
            self._selector.register(sock, selectors.EVENT_READ, conn)

    def _victim(self) -> _Connection | None:
        """The connection a new one may replace: the oldest still reading
        its request, else the oldest answer stuck for _STUCK seconds."""
        if self._reading:
            return next(iter(self._reading.values()))
        if self._writing:
            oldest = next(iter(self._writing.values()))
            if oldest.deadline - self.write_timeout + _STUCK <= time.monotonic():
                return oldest
        return None

    def _expire(self, now: float) -> None:
        for conns in (self._reading, self._writing):
            while conns:
                conn = conns[next(iter(conns))]
                if conn.deadline > now:
                    break
                self._close(conn)

    def _close(self, conn: _Connection) -> None:
        fd = conn.sock.fileno()
        self._reading.pop(fd, None)
        self._writing.pop(fd, None)
        try:
            self._selector.unregister(conn.sock)
        except (KeyError, ValueError):
            pass
        conn.sock.close()

    def _close_all(self) -> None:
        for conn in [*self._reading.values(), *self._writing.values()]:
            self._close(conn)
        self._selector.close()
        for sock in (self._listener, self._wake_r, self._wake_w):
            sock.close()

    # --------------------------------------------------------- connections

    def _ready(self, conn: _Connection) -> None:
        try:
            if conn.writing:
                self._send(conn)
            else:
                self._receive(conn)
        except OSError:
            self._close(conn)

    def _receive(self, conn: _Connection) -> None:
        try:
            data = conn.sock.recv(4096)
        except (BlockingIOError, InterruptedError):
            return
        if not data:
            self._close(conn)
            return
        conn.head += data
        end = conn.head.find(b"\r\n\r\n")
        if end < 0 and len(conn.head) > self.max_request_bytes:
            self._answer(conn, _plain("431 Request Header Fields Too Large",
                                      "request head too large"))
        elif end >= 0:
            self._answer(conn, self._handle(bytes(conn.head[:end])))

    def _answer(self, conn: _Connection, response: bytes) -> None:
        fd = conn.sock.fileno()
        self._reading.pop(fd, None)
        conn.head = bytearray()
        conn.out = memoryview(response)
        conn.writing = True
        conn.deadline = time.monotonic() + self.write_timeout
        self._writing[fd] = conn
        self._selector.modify(conn.sock, selectors.EVENT_WRITE, conn)
        self._send(conn)

    def _send(self, conn: _Connection) -> None:
        while conn.out:
            try:
                sent = conn.sock.send(conn.out)
            except (BlockingIOError, InterruptedError):
                return
            conn.out = conn.out[sent:]
        try:
            conn.sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        self._close(conn)

    # ------------------------------------------------------------- requests

    def _handle(self, head: bytes) -> bytes:
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split()
        if len(parts) != 3 or not parts[2].startswith("HTTP/"):
            return _plain("400 Bad Request", "bad request line")
        method, target, _ = parts
        if method not in ("GET", "HEAD"):
            return _response("405 Method Not Allowed", [("Allow", "GET, HEAD")], b"")
        url = urlsplit(target)
        if url.path not in _PATHS:
            return _plain("404 Not Found", "not found: try /metrics")
        headers = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if sep:
                headers[name.strip().lower()] = value.strip()
        try:
            status, extra, body = self._metrics(headers, parse_qs(url.query))
        except Exception:
            _log.exception("collecting metrics failed")
            return _plain("500 Internal Server Error", "collecting metrics failed")
        return _response(status, extra, body, send_body=method == "GET")

    def _metrics(self, headers: dict[str, str],
                 params: dict[str, list[str]]) -> tuple[str, list[tuple[str, str]], bytes]:
        from prometheus_client.exposition import choose_encoder

        encoder, content_type = choose_encoder(headers.get("accept", ""))
        registry = self.registry
        if "name[]" in params:
            registry = _Only(registry, params["name[]"])
        body = encoder(registry)
        extra = [("Content-Type", content_type)]
        encodings = [e.split(";")[0].strip().lower()
                     for e in headers.get("accept-encoding", "").split(",")]
        if "gzip" in encodings:
            body = gzip.compress(body)
            extra.append(("Content-Encoding", "gzip"))
        return "200 OK", extra, body


class _Only:
    """A registry's samples named in ``names`` (the ``name[]`` arguments)."""

    def __init__(self, registry: Any, names: list[str]) -> None:
        self.registry = registry
        self.names = set(names)

    def collect(self) -> Any:
        for family in self.registry.collect():
            samples = [s for s in family.samples if s.name in self.names]
            if samples:
                family = copy.copy(family)
                family.samples = samples
                yield family
