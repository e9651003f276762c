"""``pygrpc-ffi serve --tls-cert/--tls-key/--tls-client-ca/--tls-reload-seconds``
on both engines: the C++ host takes the flags, the grpcio engine serves with
grpcio's dynamic credentials (pygrpc_ffi/serve_tls.py).  Real grpcio secure
channels, and Python's ssl module to see the certificate a new connection
is given.  Certificates: tls_kit.py (openssl)."""

from __future__ import annotations

import os
import pathlib
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable

import grpc
import pytest
from conftest import CHANNEL_OPTIONS, ENGINES, HERE, PROTOS, ROOT, Server
from metrics_kit import free_port
from tls_kit import Pki, replace
from waiting import wait_until

pytestmark = pytest.mark.timeout(120)

HOSTNAME = "localhost"  # in the server certificates' SANs, with 127.0.0.1
EMPTY = "/grpc.testing.TestService/EmptyCall"  # interop_handlers: b"" -> b""


def tls_flags(pki: Pki, *extra: str) -> tuple[str, ...]:
    return ("--tls-cert", str(pki.cert), "--tls-key", str(pki.key), *extra)


@pytest.fixture()
def pki(tmp_path: pathlib.Path) -> Pki:
    return Pki(tmp_path)


def secure(address: str, pki: Pki, client: tuple[pathlib.Path, pathlib.Path] | None = None,
           ) -> grpc.Channel:
    creds = grpc.ssl_channel_credentials(
        root_certificates=pki.ca.cert.read_bytes(),
        private_key=client[1].read_bytes() if client else None,
        certificate_chain=client[0].read_bytes() if client else None)
    return grpc.secure_channel(address, creds, options=[
        *CHANNEL_OPTIONS, ("grpc.ssl_target_name_override", HOSTNAME)])


def call(channel: grpc.Channel) -> grpc.StatusCode:
    try:
        assert channel.unary_unary(EMPTY)(b"", timeout=10) == b""
    except grpc.RpcError as err:
        return err.code()  # type: ignore[no-any-return]
    return grpc.StatusCode.OK


def served_serial(address: str, pki: Pki) -> int:
    """The serial of the certificate a new connection is given (ALPN h2)."""
    host, _, port = address.rpartition(":")
    ctx = ssl.create_default_context(cafile=str(pki.ca.cert))
    ctx.set_alpn_protocols(["h2"])
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        with ctx.wrap_socket(sock, server_hostname=HOSTNAME) as tls:
            assert tls.selected_alpn_protocol() == "h2"
            cert = tls.getpeercert()
    assert cert is not None
    return int(cert["serialNumber"], 16)


@pytest.mark.parametrize("engine", ENGINES)
def test_tls_is_served_and_plaintext_refused(serving: Callable[..., Server], pki: Pki,
                                             engine: str) -> None:
    server = serving(engine, *tls_flags(pki))
    with secure(server.address, pki) as channel:
        assert call(channel) is grpc.StatusCode.OK
    with grpc.insecure_channel(server.address, options=CHANNEL_OPTIONS) as plain:
        assert call(plain) is grpc.StatusCode.UNAVAILABLE
    assert served_serial(server.address, pki) == 1001
    with secure(server.address, pki) as channel:  # the server lived through it
        assert call(channel) is grpc.StatusCode.OK


@pytest.mark.parametrize("engine", ENGINES)
def test_mtls_serves_only_clients_of_the_client_ca(serving: Callable[..., Server], pki: Pki,
                                                   engine: str) -> None:
    server = serving(engine, *tls_flags(pki, "--tls-client-ca", str(pki.ca.cert)))
    with secure(server.address, pki) as channel:  # no client certificate
        assert call(channel) is grpc.StatusCode.UNAVAILABLE
    with secure(server.address, pki, pki.stranger) as channel:  # another CA's
        assert call(channel) is grpc.StatusCode.UNAVAILABLE
    with secure(server.address, pki, pki.client) as channel:
        assert call(channel) is grpc.StatusCode.OK


@pytest.mark.parametrize("engine", ENGINES)
def test_replaced_certificate_reaches_new_connections_and_a_bad_one_is_refused(
        serving: Callable[..., Server], pki: Pki, engine: str) -> None:
    server = serving(engine, *tls_flags(pki, "--tls-reload-seconds", "1"))
    with secure(server.address, pki) as old:
        assert call(old) is grpc.StatusCode.OK
        cert2, key2 = pki.ca.issue("server2", "server-2", 2002)
        replace(pki.key, key2.read_bytes())
        replace(pki.cert, cert2.read_bytes())
        assert wait_until(lambda: served_serial(server.address, pki) == 2002, timeout=20)
        assert call(old) is grpc.StatusCode.OK  # the old connection is unharmed
        # A replacement that does not load keeps the credentials in use.
        replace(pki.cert, b"-----BEGIN CERTIFICATE-----\nnot a certificate\n")
        time.sleep(2.5)
        assert served_serial(server.address, pki) == 2002
        assert call(old) is grpc.StatusCode.OK
    with secure(server.address, pki) as new:
        assert call(new) is grpc.StatusCode.OK


@pytest.mark.parametrize("engine", ENGINES)
def test_every_process_serves_tls(serving: Callable[..., Server], pki: Pki,
                                  engine: str) -> None:
    listen = f"127.0.0.1:{free_port()}"
    server = serving(engine, *tls_flags(pki, "--tls-client-ca", str(pki.ca.cert)),
                     "--listen", listen, "--processes", "2")
    # A connection each, so the kernel spreads them over both processes.
    options = [*CHANNEL_OPTIONS, ("grpc.use_local_subchannel_pool", 1),
               ("grpc.ssl_target_name_override", HOSTNAME)]
    creds = grpc.ssl_channel_credentials(pki.ca.cert.read_bytes(), pki.client[1].read_bytes(),
                                         pki.client[0].read_bytes())
    for _ in range(8):
        with grpc.secure_channel(server.address, creds, options=options) as channel:
            assert call(channel) is grpc.StatusCode.OK
        with grpc.insecure_channel(server.address, options=options) as plain:
            assert call(plain) is grpc.StatusCode.UNAVAILABLE


def serve_fails(engine: str, *flags: str) -> tuple[int, str]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(PROTOS), str(HERE), str(HERE.parent)]))
    done = subprocess.run(
        [sys.executable, "-m", "pygrpc_ffi", "serve", "interop_handlers", "--engine", engine,
         "--listen", "127.0.0.1:0", *flags],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    return done.returncode, done.stderr.strip()


@pytest.mark.parametrize("engine", ENGINES)
def test_unusable_tls_files_stop_the_start_with_one_line(pki: Pki, engine: str) -> None:
    missing = str(pki.directory / "missing.pem")
    other_cert, _ = pki.ca.issue("other", "server-9", 9009)
    cases = {
        ("--tls-cert", str(pki.cert)): "--tls-cert and --tls-key go together",
        ("--tls-key", str(pki.key)): "--tls-cert and --tls-key go together",
        ("--tls-client-ca", str(pki.ca.cert)): "--tls-client-ca needs --tls-cert",
        ("--tls-cert", missing, "--tls-key", str(pki.key)): f"cannot read --tls-cert {missing}",
        ("--tls-cert", str(other_cert), "--tls-key", str(pki.key)): "does not match",
        (*tls_flags(pki), "--tls-client-ca", str(pki.key)): "cannot load --tls-client-ca",
        (*tls_flags(pki), "--tls-reload-seconds", "-1"): "--tls-reload-seconds must be",
    }
    for flags, reason in cases.items():
        code, stderr = serve_fails(engine, *flags)
        assert code == 2, (flags, stderr)
        assert stderr.count("\n") == 0 and stderr.startswith("error: ") and reason in stderr, (
            flags, stderr)
