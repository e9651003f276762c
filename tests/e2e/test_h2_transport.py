"""The product host (nghttp2) against the HTTP/2 attacks that
take gRPC C++ 1.51 down: a CONTINUATION flood (one header block that never
ends) and rapid reset (CVE-2023-44487: HEADERS then RST_STREAM, over and
over).  Raw frames from 127.0.0.1, bounded in count and time; the host's
memory is read from /proc/PID/status (VmHWM: its peak RSS), and a grpcio
client must be served during and right after each attack."""

from __future__ import annotations

import os
import pathlib
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import grpc
import hpack
import hyperframe.frame as hf
import pytest
from conftest import ROOT
from streams_kit import ECHO, UNARY_PY, Host

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
# The product host (the ASan + UBSan build in the test command's last run).
H2_BINARY = pathlib.Path(os.environ.get(
    "PGF_HOST_BINARY", ROOT / "build" / "grpc_server" / "pygrpc_ffi_server"))
# ASan's redzones and quarantine make every allocation cost more.
SANITIZER_FACTOR = 3 if "asan" in str(H2_BINARY) else 1


@pytest.fixture()
def host(monkeypatch: pytest.MonkeyPatch) -> Iterator[Host]:
    assert H2_BINARY.exists(), f"{H2_BINARY} is not built"
    monkeypatch.setenv("PGF_HOST_BINARY", str(H2_BINARY))
    if SANITIZER_FACTOR > 1:
        # ASan keeps 256 MiB of freed memory in quarantine by default, which
        # an attack of thousands of connections fills: that is not memory the
        # host holds.
        monkeypatch.setenv("ASAN_OPTIONS", os.environ.get("ASAN_OPTIONS", "")
                           + ":quarantine_size_mb=16")
    h = Host()
    # Warm up: Python, the worker threads and a first connection exist
    # before the baseline is read.
    with h.channel() as ch:
        for _ in range(20):
            assert ch.unary_unary(ECHO)(b"warm", timeout=10) == b"warm"
            ch.unary_unary(UNARY_PY)(b"", timeout=10)
    yield h
    assert h.stop() == 0


class Attacker:
    """One raw HTTP/2 connection.  A reader thread drains what the host
    sends and notes a GOAWAY and the close of the connection."""

    def __init__(self, address: str) -> None:
        hostname, port = address.rsplit(":", 1)
        self.sock = socket.create_connection((hostname, int(port)), timeout=10)
        self.sock.sendall(PREFACE + hf.SettingsFrame(0).serialize())
        self.encoder = hpack.Encoder()
        self.address = address
        self.goaway = threading.Event()
        self.goaway_code = -1
        self.pings = 0  # PINGs from the host (never answered)
        self.closed = threading.Event()
        self.sent_frames = 0
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def headers_block(self, path: str) -> bytes:
        return self.encoder.encode([
            (":method", "POST"), (":scheme", "http"), (":path", path),
            (":authority", self.address), ("content-type", "application/grpc"),
            ("te", "trailers")])

    def send(self, data: bytes) -> bool:
        """False once the host closed the connection."""
        try:
            self.sock.sendall(data)
            return True
        except OSError:
            self.closed.set()
            return False

    def _read(self) -> None:
        buf = b""
        try:
            while True:
                data = self.sock.recv(1 << 16)
                if not data:
                    break
                buf += data
                while len(buf) >= 9:
                    length = int.from_bytes(buf[:3], "big")
                    if len(buf) < 9 + length:
                        break
                    if buf[3] == 0x7:  # GOAWAY
                        self.goaway_code = int.from_bytes(buf[13:17], "big")
                        self.goaway.set()
                    elif buf[3] == 0x6 and not buf[4] & 0x1:  # PING, not an ACK
                        self.pings += 1
                    buf = buf[9 + length:]
        except OSError:
            pass
        finally:
            self.closed.set()

    def close(self) -> None:
        try:
            self.sock.close()
        finally:
            self._reader.join(5)


class LegitimateClient:
    """grpcio calls in a loop on their own connection while an attack runs:
    every one must succeed."""

    def __init__(self, address: str) -> None:
        self.channel = grpc.insecure_channel(
            address, options=[("grpc.use_local_subchannel_pool", 1)])
        self.ok = 0
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        echo = self.channel.unary_unary(ECHO)
        py = self.channel.unary_unary(UNARY_PY)
        while not self._stop.is_set():
            try:
                assert echo(b"legit", timeout=10) == b"legit"
                py(b"", timeout=10)
                self.ok += 1
            except Exception as err:
                self.failures.append(repr(err))
            time.sleep(0.01)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)
        self.channel.close()


def served_after(host: Host) -> bool:
    """A new connection's calls are answered."""
    with grpc.insecure_channel(host.address,
                               options=[("grpc.use_local_subchannel_pool", 1)]) as ch:
        return all(ch.unary_unary(ECHO)(b"after", timeout=10) == b"after" for _ in range(5))


# ------------------------------------------------------ CONTINUATION flood

def continuation_frame(stream_id: int, index: int) -> bytes:
    """16 KiB of new literal headers (never indexed, new names): a server
    that kept a header block until its END_HEADERS would hold all of it."""
    block = bytearray()
    i = 0
    while len(block) < 16000:
        name = f"x-flood-{index}-{i}".encode()
        value = b"v" * 1000
        # Literal, never indexed, new name; the value's length in HPACK's
        # integer form (7-bit prefix full, then the rest).
        block += b"\x10" + bytes([len(name)]) + name + b"\x7f" + \
            _hpack_int_rest(len(value) - 127) + value
        i += 1
    return hf.ContinuationFrame(stream_id, data=bytes(block)).serialize()


def _hpack_int_rest(n: int) -> bytes:
    """The continuation bytes of an HPACK integer whose 7-bit prefix is full."""
    out = bytearray()
    while n >= 128:
        out.append((n & 0x7f) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def run_attack(host: Host, one_connection, workers: int, seconds: float
               ) -> tuple[list[int], list[float], int, int, LegitimateClient, int]:
    """workers threads, each attacking over one connection after another
    for `seconds` (a closed connection is replaced at once) while a grpcio
    client calls the host.  one_connection(attacker, until) attacks until the
    host closes the connection or time is up, and returns the frames (or
    resets) the socket took.  Returns per connection the frames sent and the
    seconds it lasted, the number of connections the host did not close, the
    host's peak RSS growth (KiB), the legitimate client, and RSS growth now."""
    time.sleep(0.3)
    hwm_before = host.status("VmHWM")
    rss_before = host.status("VmRSS")
    legit = LegitimateClient(host.address)
    sent: list[int] = []
    lasted: list[float] = []
    left_open = [0]
    lock = threading.Lock()

    def worker() -> None:
        until = time.monotonic() + seconds
        while time.monotonic() < until:
            a = Attacker(host.address)
            started = time.monotonic()
            try:
                n = one_connection(a, until)
                cut = not a.closed.is_set() and time.monotonic() >= until
                # Closed by the host (its GOAWAY, then the close), or not.
                closed = a.closed.wait(5)
            finally:
                a.close()
            with lock:
                sent.append(n)
                lasted.append(time.monotonic() - started)
                # The last connection, cut by the end of the attack, may not
                # have reached the limit.
                left_open[0] += not closed and not cut

    try:
        threads = [threading.Thread(target=worker) for _ in range(workers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(seconds + 60)
        time.sleep(0.5)
        grown_peak = host.status("VmHWM") - hwm_before
        grown_now = host.status("VmRSS") - rss_before
        assert served_after(host)
    finally:
        legit.stop()
    return sent, lasted, left_open[0], grown_peak, legit, grown_now


def flood_one(a: Attacker, until: float) -> int:
    """One stream's HEADERS without END_HEADERS, then CONTINUATION frames
    that never end the block, until the host closes the connection (or 2,000
    frames, 32 MiB of header block)."""
    if not a.send(hf.HeadersFrame(1, data=a.headers_block(UNARY_PY)).serialize()):
        return 0
    n = 0
    while n < 2000 and not a.closed.is_set():
        if not a.send(continuation_frame(1, n)):
            break
        n += 1
    return n


def test_continuation_flood_closes_each_connection_and_memory_stays_flat(host: Host) -> None:
    sent, _lasted, left_open, grown, legit, grown_now = run_attack(
        host, flood_one, workers=3, seconds=4.0)
    print(f"\ncontinuation flood: {len(sent)} connections, CONTINUATION frames each "
          f"(max) {max(sent)}, {sum(sent) * 16 // 1024} MiB sent in all, "
          f"peak RSS +{grown} KiB (now +{grown_now} KiB), "
          f"legitimate calls during: {legit.ok} ok, {len(legit.failures)} failed")
    assert left_open == 0, f"{left_open} flooding connections were not closed"
    # nghttp2 allows 8 CONTINUATION frames after a HEADERS; the rest of what
    # a client got to send is what the sockets' buffers took before the host
    # read it (a few MiB on loopback).  Without that bound each connection
    # sends its 2,000 (32 MiB) and stays open.
    assert max(sent) < 1000, sent
    assert grown < 16 * 1024 * SANITIZER_FACTOR, grown
    assert legit.ok > 0 and not legit.failures, legit.failures[:3]


# ---------------------------------------------------------------- rapid reset

def rapid_reset_one(a: Attacker, until: float) -> int:
    """Whole unary requests (so a handler is dispatched), each reset at once
    (RST_STREAM CANCEL), in batches of 100, until the host closes the
    connection (or 50,000 resets; once time is up, after at least 2,000,
    twice the burst the host allows)."""
    block = a.headers_block(UNARY_PY)
    stream_id, resets = 1, 0
    while resets < 50000 and not a.closed.is_set() and (
            resets < 2000 or time.monotonic() < until):
        out = bytearray()
        for _ in range(100):
            h = hf.HeadersFrame(stream_id, data=block)
            h.flags.add("END_HEADERS")
            out += h.serialize()
            out += hf.DataFrame(stream_id, data=b"\0\0\0\0\0", flags=["END_STREAM"]).serialize()
            out += hf.RstStreamFrame(stream_id, error_code=8).serialize()
            stream_id += 2
        if not a.send(bytes(out)):
            break
        resets += 100
    return resets


def test_rapid_reset_closes_the_abusive_connections_and_others_are_served(host: Host) -> None:
    sent, lasted, left_open, grown, legit, grown_now = run_attack(
        host, rapid_reset_one, workers=3, seconds=4.0)
    print(f"\nrapid reset: {len(sent)} connections, resets each (max) {max(sent)}, "
          f"{sum(sent)} in all, longest {max(lasted):.2f} s, peak RSS +{grown} KiB "
          f"(now +{grown_now} KiB), legitimate calls during: {legit.ok} ok, "
          f"{len(legit.failures)} failed")
    assert left_open == 0, f"{left_open} rapid-reset connections were not closed"
    # The token bucket holds 1,000 resets and refills 33 a second; what the
    # sockets' buffers took before the host read it (up to ~20,000 resets
    # under ASan) came on top, so the count a client got to send says
    # little: that every connection was closed (left_open) is the test.
    # Without the bucket every connection stays open.
    assert grown < 64 * 1024 * SANITIZER_FACTOR, grown
    assert legit.ok > 0 and not legit.failures, legit.failures[:3]


# ------------------------------------------------------------ pings, keepalive

@pytest.fixture()
def host_with(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    assert H2_BINARY.exists(), f"{H2_BINARY} is not built"
    monkeypatch.setenv("PGF_HOST_BINARY", str(H2_BINARY))
    started: list[Host] = []

    def start(*extra: str) -> Host:
        started.append(Host(*extra))
        return started[-1]

    yield start
    for h in started:
        assert h.stop() == 0


def test_a_ping_flood_gets_goaway_enhance_your_calm(host_with: Any) -> None:
    host = host_with("--max-ping-strikes", "2", "--min-ping-interval-ms", "300000")
    a = Attacker(host.address)
    try:
        # gRPC's policy: pings closer than the interval with no data sent in
        # between are strikes; beyond the strikes, GOAWAY ENHANCE_YOUR_CALM.
        for i in range(10):
            if not a.send(hf.PingFrame(0, opaque_data=i.to_bytes(8, "big")).serialize()):
                break
            time.sleep(0.02)
        assert a.goaway.wait(5) and a.goaway_code == 0xB
        assert a.closed.wait(5)
    finally:
        a.close()
    assert served_after(host)


def test_keepalive_closes_a_connection_whose_peer_does_not_answer(host_with: Any) -> None:
    host = host_with("--keepalive-time-ms", "300", "--keepalive-timeout-ms", "300")
    a = Attacker(host.address)  # reads, never ACKs a PING: a dead peer
    try:
        # Checked once a second: ping after ~1 s quiet, closed ~1 s later.
        assert a.closed.wait(6), "the host kept a dead peer's connection"
        assert a.pings >= 1
    finally:
        a.close()
    # A live client answers the pings (grpcio does) and keeps its connection.
    with grpc.insecure_channel(host.address,
                               options=[("grpc.use_local_subchannel_pool", 1)]) as ch:
        call = ch.unary_unary(ECHO)
        for _ in range(3):
            assert call(b"alive", timeout=10) == b"alive"
            time.sleep(1.2)
