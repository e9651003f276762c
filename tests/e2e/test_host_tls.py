"""TLS and mTLS of the product host (nghttp2): --tls-cert, --tls-key,
--tls-client-ca, --tls-reload-seconds, against the host binary itself (the
bench's build: C echo handlers and tests/e2e/host_stream_handlers.py) with
grpcio's secure channels, Python's ssl module (to see the certificate the
host presents) and raw sockets.  Certificates: tls_kit.py (openssl)."""

from __future__ import annotations

import os
import pathlib
import socket
import ssl
import subprocess
import time
import warnings
from collections.abc import Callable, Iterator

import grpc
import pytest
from conftest import CHANNEL_OPTIONS, ROOT
from streams_kit import COUNT, ECHO, UNARY_PY, Host, Requests
from tls_kit import Pki, replace

HOSTNAME = "localhost"  # in the server certificates' SANs, with 127.0.0.1
PRODUCT = "pygrpc_ffi_server"
# Both hosts, or the one $PGF_HOST_BINARY names (the sanitizer run's).
BUILD = ROOT / "build" / "grpc_server"
BINARIES = ([pathlib.Path(os.environ["PGF_HOST_BINARY"])] if os.environ.get("PGF_HOST_BINARY")
            else [BUILD / PRODUCT, BUILD / "pygrpc_ffi_grpcpp_server"])


@pytest.fixture(params=BINARIES, ids=[b.name for b in BINARIES])
def binary(request: pytest.FixtureRequest) -> pathlib.Path:
    path: pathlib.Path = request.param
    if not path.exists():
        pytest.skip(f"{path} is not built")
    return path


#: What only the nghttp2 host does (its own log lines, ALPN refused in the
#: handshake, a bad replacement kept out); gRPC C++ 1.51 logs and refuses in
#: its own ways, and its FileWatcherCertificateProvider takes a bad
#: replacement and fails new handshakes until the files are fixed.
product_only = pytest.mark.parametrize(
    "binary", [b for b in BINARIES if b.name == PRODUCT], indirect=True,
    ids=lambda b: b.name)


@pytest.fixture()
def pki(tmp_path: pathlib.Path) -> Pki:
    return Pki(tmp_path)


class TlsHost(Host):
    """streams_kit's Host serving TLS; its stderr goes to a file the test
    reads."""

    def __init__(self, pki: Pki, *extra: str) -> None:
        self.pki = pki
        self.stderr_path = pki.directory / "host.stderr"
        # The host inherits this process's descriptor 2: pointed at the file
        # while it starts.
        saved = os.dup(2)
        try:
            with open(self.stderr_path, "wb") as err:
                os.dup2(err.fileno(), 2)
            super().__init__("--tls-cert", str(pki.cert), "--tls-key", str(pki.key), *extra)
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        self.port = int(self.address.rsplit(":", 1)[1])
        self.product = True

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def logged(self, marker: str, count: int = 1) -> bool:
        """Waits until the host logged marker count times (the nghttp2 host),
        or for 2.5 reload periods (gRPC C++ logs in its own words)."""
        if not self.product:
            time.sleep(2.5)
            return True
        return wait_for(lambda: self.stderr().count(marker) >= count)

    def channel(self, client: tuple[pathlib.Path, pathlib.Path] | None = None,
                ca: pathlib.Path | None = None) -> grpc.Channel:
        creds = grpc.ssl_channel_credentials(
            root_certificates=(ca or self.pki.ca.cert).read_bytes(),
            private_key=client[1].read_bytes() if client else None,
            certificate_chain=client[0].read_bytes() if client else None)
        return grpc.secure_channel(
            self.address, creds,
            options=[*CHANNEL_OPTIONS, ("grpc.ssl_target_name_override", HOSTNAME)])

    def tls_socket(self, alpn: list[str] | None = None,
                   client: tuple[pathlib.Path, pathlib.Path] | None = None,
                   tls12: bool = False) -> ssl.SSLSocket:
        """A handshaken TLS connection from Python's ssl module."""
        ctx = ssl.create_default_context(cafile=str(self.pki.ca.cert))
        if alpn is not None:
            ctx.set_alpn_protocols(alpn)
        if client is not None:
            ctx.load_cert_chain(str(client[0]), str(client[1]))
        if tls12:
            ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=10)
        try:
            return ctx.wrap_socket(sock, server_hostname=HOSTNAME)
        except BaseException:
            sock.close()
            raise

    def served(self, client: tuple[pathlib.Path, pathlib.Path] | None = None) -> tuple[int, str]:
        """The serial and CN of the certificate a new connection is given."""
        with self.tls_socket(["h2"], client) as s:
            cert = s.getpeercert()
        assert cert is not None
        cn = dict(x[0] for x in cert["subject"])["commonName"]
        return int(cert["serialNumber"], 16), cn

    def alive(self) -> bool:
        return self.process.poll() is None


@pytest.fixture()
def start(pki: Pki, binary: pathlib.Path,
          monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., TlsHost]]:
    monkeypatch.setenv("PGF_HOST_BINARY", str(binary))
    hosts: list[TlsHost] = []

    def run(*extra: str) -> TlsHost:
        hosts.append(TlsHost(pki, *extra))
        hosts[-1].product = binary.name == PRODUCT
        return hosts[-1]

    yield run
    for h in hosts:
        assert h.stop() == 0, h.stderr()


def echo(channel: grpc.Channel, payload: bytes = b"ping") -> bytes:
    return channel.unary_unary(ECHO)(payload, timeout=10)


def refused(channel: grpc.Channel) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as err:
        echo(channel)
    return err.value.code()


def closed_by_host(sock: socket.socket, timeout: float) -> bool:
    """Whether the host closes sock (EOF or a reset) within timeout; what it
    sends before (a TLS alert) is read and dropped."""
    sock.settimeout(timeout)
    try:
        while sock.recv(4096):
            pass
        return True
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def wait_for(predicate: Callable[[], bool], timeout: float = 20) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return predicate()


def test_tls_served_and_plaintext_refused(start: Callable[..., TlsHost]) -> None:
    host = start()
    with host.channel() as ch:
        assert echo(ch) == b"ping"
        assert ch.unary_unary(UNARY_PY)(b"", timeout=10) == b""  # a Python handler
        big = os.urandom(3 << 20)  # many TLS records, partial writes
        assert echo(ch, big) == big
        replies = list(ch.unary_stream(COUNT)(b"2000", timeout=20))
        assert len(replies) == 2000 and all(len(r) == 16 for r in replies)
    # A plaintext gRPC client: the handshake fails, the connection is closed.
    with grpc.insecure_channel(host.address) as plain:
        assert refused(plain) == grpc.StatusCode.UNAVAILABLE
    with socket.create_connection(("127.0.0.1", host.port), timeout=10) as raw:
        raw.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes(9))
        assert closed_by_host(raw, 10)
    assert host.alive()
    with host.channel() as ch:
        assert echo(ch, b"after") == b"after"


def test_slow_reader(start: Callable[..., TlsHost]) -> None:
    # The client reads nothing for a while: the host's TLS writes stop
    # (WANT_WRITE, flow control) and resume where they stopped.
    host = start()
    with host.channel() as ch:
        replies = ch.unary_stream(COUNT)(b"100000", timeout=60)
        big = os.urandom(8 << 20)
        echoes = ch.stream_stream(ECHO)(iter([big, big]), timeout=60)
        time.sleep(2)
        assert sum(1 for r in replies if len(r) == 16) == 100000
        assert list(echoes) == [big, big]


@product_only
def test_tls_versions_and_alpn(start: Callable[..., TlsHost]) -> None:
    host = start()
    with host.tls_socket(["h2"]) as s:
        assert (s.version(), s.selected_alpn_protocol()) == ("TLSv1.3", "h2")
    with host.tls_socket(["h2"], tls12=True) as s:
        assert (s.version(), s.selected_alpn_protocol()) == ("TLSv1.2", "h2")
    # TLS 1.1, from a client that would speak it: the host's alert refuses it.
    old = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    old.load_verify_locations(str(host.pki.ca.cert))
    old.set_ciphers("DEFAULT:@SECLEVEL=0")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        old.minimum_version = ssl.TLSVersion.TLSv1_1
        old.maximum_version = ssl.TLSVersion.TLSv1_1
    with socket.create_connection(("127.0.0.1", host.port), timeout=10) as raw:
        with pytest.raises(ssl.SSLError, match="PROTOCOL_VERSION"):
            old.wrap_socket(raw, server_hostname=HOSTNAME)
    # A client that offers other protocols only is refused in the handshake.
    with pytest.raises(ssl.SSLError, match=r"NO_APPLICATION_PROTOCOL|no application protocol"):
        host.tls_socket(["http/1.1"])
    # One that offers none gets its handshake, then the connection closes.
    with host.tls_socket(None) as s:
        assert s.selected_alpn_protocol() is None
        assert closed_by_host(s, 10)
    with host.channel() as ch:
        assert echo(ch) == b"ping"


def test_mtls(start: Callable[..., TlsHost], pki: Pki) -> None:
    host = start("--tls-client-ca", str(pki.ca.cert))
    with host.channel() as ch:  # no client certificate
        assert refused(ch) == grpc.StatusCode.UNAVAILABLE
    with host.channel(pki.stranger) as ch:  # signed by another CA
        assert refused(ch) == grpc.StatusCode.UNAVAILABLE
    try:  # the same, seen from ssl
        with host.tls_socket(["h2"], pki.stranger) as s:
            s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
            # TLS 1.3: the alert comes after the client's Finished.
            assert s.recv(1) == b""
    except (ssl.SSLError, OSError):
        pass
    with host.channel(pki.client) as ch:
        assert echo(ch) == b"ping"
        assert ch.unary_unary(UNARY_PY)(b"", timeout=10) == b""
    assert host.alive()


def test_certificate_rotated_for_new_connections(start: Callable[..., TlsHost],
                                                 pki: Pki) -> None:
    host = start("--tls-reload-seconds", "1")
    assert host.served() == (1001, "server-1")
    with host.channel() as old:
        # A bidi stream open across the rotation: its connection must live.
        requests = Requests()
        replies = old.stream_stream(ECHO)(iter(requests), timeout=60)
        requests.send(b"before")
        assert next(replies) == b"before"

        cert2, key2 = pki.ca.issue("server2", "server-2", 2002)
        replace(pki.key, key2.read_bytes())
        replace(pki.cert, cert2.read_bytes())
        assert wait_for(lambda: host.served() == (2002, "server-2")), host.stderr()
        assert host.logged("TLS credentials reloaded")

        requests.send(b"after")
        assert next(replies) == b"after"
        requests.close()
        assert list(replies) == []
        assert echo(old) == b"ping"
    with host.channel() as new:
        assert echo(new) == b"ping"


def test_client_ca_rotated(start: Callable[..., TlsHost], pki: Pki) -> None:
    client_ca = pki.directory / "client-ca.pem"
    client_ca.write_bytes(pki.ca.cert.read_bytes())
    host = start("--tls-client-ca", str(client_ca), "--tls-reload-seconds", "1")
    with host.channel(pki.client) as ch:
        assert echo(ch) == b"ping"
    with host.channel(pki.stranger) as ch:
        assert refused(ch) == grpc.StatusCode.UNAVAILABLE
    # The client CA file now names the other CA: its clients get in, ours
    # no longer.
    replace(client_ca, pki.other_ca.cert.read_bytes())
    assert host.logged("TLS credentials reloaded"), host.stderr()
    with host.channel(pki.stranger) as ch:
        assert echo(ch) == b"ping"
    with host.channel(pki.client) as ch:
        assert refused(ch) == grpc.StatusCode.UNAVAILABLE


@product_only
def test_bad_replacement_keeps_the_old_credentials(start: Callable[..., TlsHost],
                                                   pki: Pki) -> None:
    host = start("--tls-reload-seconds", "1")
    good_cert = pki.cert.read_bytes()

    def failures() -> list[str]:
        return [line for line in host.stderr().splitlines() if "TLS reload failed" in line]

    replace(pki.cert, b"-----BEGIN CERTIFICATE-----\nnot a certificate\n")
    assert host.logged("TLS reload failed"), host.stderr()
    assert "cannot load --tls-cert" in failures()[0]
    assert host.served() == (1001, "server-1")
    with host.channel() as ch:
        assert echo(ch) == b"ping"

    # A valid certificate, but not for the key in --tls-key.
    other_cert, _ = pki.ca.issue("mismatch", "server-3", 3003)
    replace(pki.cert, other_cert.read_bytes())
    assert host.logged("TLS reload failed", 2), host.stderr()
    assert "does not match" in failures()[1]
    time.sleep(2.5)  # checked twice more: one line per replacement, not per check
    assert len(failures()) == 2
    assert host.served() == (1001, "server-1")
    with host.channel() as ch:
        assert echo(ch) == b"ping"

    replace(pki.cert, good_cert)  # fixed: loaded again, still serving
    assert host.logged("TLS credentials reloaded"), host.stderr()
    assert host.served() == (1001, "server-1")
    assert host.alive()


def test_silent_client_is_dropped(start: Callable[..., TlsHost]) -> None:
    # The handshake gets --keepalive-timeout-ms (checked once a second).
    host = start("--keepalive-timeout-ms", "1000")
    silent = [socket.create_connection(("127.0.0.1", host.port), timeout=10)
              for _ in range(3)]
    try:
        began = time.monotonic()
        with host.channel() as ch:  # served meanwhile
            assert echo(ch) == b"ping"
        for s in silent:
            assert closed_by_host(s, 10)
        assert time.monotonic() - began < 8
    finally:
        for s in silent:
            s.close()
    with host.channel() as ch:
        assert echo(ch) == b"ping"


def _start_error(binary: pathlib.Path, *args: str) -> tuple[int, str]:
    run = subprocess.run([str(binary), "--listen", "127.0.0.1:0", *args],
                         capture_output=True, text=True, timeout=60)
    return run.returncode, run.stderr


@pytest.mark.parametrize("case", ["missing cert", "missing key", "bad cert", "bad key",
                                  "mismatch", "cert only", "key only", "ca only",
                                  "missing ca", "bad ca", "bad reload"])
def test_startup_errors(pki: Pki, binary: pathlib.Path, case: str) -> None:
    d = pki.directory
    junk = d / "junk.pem"
    junk.write_text("junk\n")
    other_cert, _ = pki.ca.issue("other", "server-9", 9009)
    cert, key = str(pki.cert), str(pki.key)
    args, expected = {
        "missing cert": (["--tls-cert", str(d / "nope.pem"), "--tls-key", key],
                         "cannot read --tls-cert"),
        "missing key": (["--tls-cert", cert, "--tls-key", str(d / "nope.key")],
                        "cannot read --tls-key"),
        "bad cert": (["--tls-cert", str(junk), "--tls-key", key], "cannot load --tls-cert"),
        "bad key": (["--tls-cert", cert, "--tls-key", str(junk)], "cannot load --tls-key"),
        "mismatch": (["--tls-cert", str(other_cert), "--tls-key", key], "does not match"),
        "cert only": (["--tls-cert", cert], "--tls-cert and --tls-key go together"),
        "key only": (["--tls-key", key], "--tls-cert and --tls-key go together"),
        "ca only": (["--tls-client-ca", str(pki.ca.cert)], "--tls-client-ca needs"),
        "missing ca": (["--tls-cert", cert, "--tls-key", key, "--tls-client-ca",
                        str(d / "nope-ca.pem")], "cannot read --tls-client-ca"),
        "bad ca": (["--tls-cert", cert, "--tls-key", key, "--tls-client-ca", str(junk)],
                   "cannot load --tls-client-ca"),
        "bad reload": (["--tls-cert", cert, "--tls-key", key, "--tls-reload-seconds", "-1"],
                       "--tls-reload-seconds must be"),
    }[case]
    code, stderr = _start_error(binary, *args)
    assert code == 2, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], stderr
