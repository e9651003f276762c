"""``pygrpc-ffi probe``, run as a command against real servers of every
engine: its exit code and line for a serving server, an unknown service, a
NOT_SERVING one, a server without health, a port nobody listens on, TLS and
mTLS servers, and bad usage."""

from __future__ import annotations

import pathlib
import subprocess
import sys
import time
from collections.abc import Iterator

import grpc
import pytest
from conftest import ENGINES, ROOT, Server
from metrics_kit import free_port
from tls_kit import Ca

pytestmark = pytest.mark.timeout(120)

SERVICE = "grpc.testing.TestService"  # SERVING in standard_handlers


class Probed:
    """One ``pygrpc-ffi probe`` run: exit code, stdout and stderr."""

    def __init__(self, *args: str) -> None:
        done = subprocess.run([sys.executable, "-m", "pygrpc_ffi", "probe", *args], cwd=ROOT,
                              capture_output=True, text=True, timeout=60)
        self.code, self.out, self.err = done.returncode, done.stdout, done.stderr

    def __repr__(self) -> str:
        return f"Probed({self.code}, {self.out!r}, {self.err!r})"


@pytest.fixture(scope="module", params=ENGINES)
def health_server(request: pytest.FixtureRequest) -> Iterator[Server]:
    server = Server(request.param, module="standard_handlers")
    yield server
    assert server.stop() == 0


@pytest.fixture(scope="module", params=ENGINES)
def plain_server(request: pytest.FixtureRequest) -> Iterator[Server]:
    server = Server(request.param)  # interop_handlers: no health service
    yield server
    assert server.stop() == 0


def test_a_serving_server_and_service_exit_0(health_server: Server) -> None:
    for args in ((), ("--service", SERVICE)):
        probed = Probed(health_server.address, *args)
        assert (probed.code, probed.out, probed.err) == (0, "status: SERVING\n", ""), args


def test_an_unknown_service_exits_4(health_server: Server) -> None:
    probed = Probed(health_server.address, "--service", "no.Such")
    assert probed.code == 4, probed
    assert probed.out.startswith("status: SERVICE_UNKNOWN") and probed.out.count("\n") == 1


def test_a_not_serving_service_exits_4(health_server: Server) -> None:
    def set_status(status: str) -> None:
        with health_server.channel() as channel:
            channel.unary_unary("/e2e.HealthControl/Set")(f"{SERVICE}={status}".encode(),
                                                          timeout=10)

    set_status("NOT_SERVING")
    try:
        probed = Probed(health_server.address, "--service", SERVICE)
        assert (probed.code, probed.out) == (4, "status: NOT_SERVING\n"), probed
    finally:
        set_status("SERVING")
    assert Probed(health_server.address, "--service", SERVICE).code == 0


def test_a_server_without_health_exits_3(plain_server: Server) -> None:
    probed = Probed(plain_server.address)
    assert probed.code == 3, probed
    assert probed.out.startswith("error: Health/Check failed: UNIMPLEMENTED")


def test_a_port_nobody_listens_on_exits_2_within_the_timeout() -> None:
    address = f"127.0.0.1:{free_port()}"
    started = time.monotonic()
    probed = Probed(address, "--timeout", "1")
    assert probed.code == 2, probed
    assert probed.out.startswith(f"error: no connection to {address} within 1s")
    assert time.monotonic() - started < 15  # 1 s, plus starting Python on a busy machine


class Pki:
    """A CA, a server certificate (localhost, 127.0.0.1) and a client one."""

    def __init__(self, directory: pathlib.Path) -> None:
        self.ca = Ca(directory, "ca")
        self.cert, self.key = self.ca.issue("server", "server-1", 1001)
        self.client_cert, self.client_key = self.ca.issue("client", "client-1", 3001,
                                                          client=True)

    def serve(self, engine: str, *extra: str) -> Server:
        return Server(engine, "--tls-cert", str(self.cert), "--tls-key", str(self.key),
                      *extra, module="standard_handlers")


@pytest.mark.parametrize("engine", ENGINES)
def test_tls_probes(tmp_path: pathlib.Path, engine: str) -> None:
    pki = Pki(tmp_path)
    server = pki.serve(engine)
    try:
        ca = ("--tls-ca", str(pki.ca.cert))
        assert Probed(server.address, *ca).code == 0  # 127.0.0.1 is in the SANs
        assert Probed(server.address, *ca, "--tls-server-name", "localhost").code == 0
        wrong_name = Probed(server.address, *ca, "--tls-server-name", "elsewhere.example")
        assert wrong_name.code == 2, wrong_name
        # Plaintext, or a server certificate the system's roots do not know.
        for args in ((), ("--tls-server-name", "localhost", "--tls-cert",
                          str(pki.client_cert), "--tls-key", str(pki.client_key))):
            probed = Probed(server.address, "--timeout", "1", *args)
            assert probed.code == 2, (args, probed)
    finally:
        assert server.stop() == 0


@pytest.mark.parametrize("engine", ENGINES)
def test_mtls_probes_need_a_client_certificate(tmp_path: pathlib.Path, engine: str) -> None:
    pki = Pki(tmp_path)
    server = pki.serve(engine, "--tls-client-ca", str(pki.ca.cert))
    try:
        ca = ("--tls-ca", str(pki.ca.cert))
        client = ("--tls-cert", str(pki.client_cert), "--tls-key", str(pki.client_key))
        probed = Probed(server.address, *ca, *client)
        assert (probed.code, probed.out) == (0, "status: SERVING\n"), probed
        refused = Probed(server.address, *ca, "--timeout", "1")
        assert refused.code == 2, refused  # refused at the handshake
        assert refused.out.startswith("error: no connection")
    finally:
        assert server.stop() == 0


def test_bad_usage_exits_64_with_one_line(tmp_path: pathlib.Path) -> None:
    not_pem = tmp_path / "not.pem"
    not_pem.write_text("hello\n")
    missing = str(tmp_path / "missing.pem")
    cases = {
        (): "the following arguments are required: ADDR",
        ("a:1", "--no-such-flag"): "unrecognized arguments: --no-such-flag",
        ("a:1", "--timeout", "soon"): "--timeout: invalid float value",
        ("a:1", "--timeout", "0"): "--timeout must be more than 0",
        ("a:1", "--tls-cert", str(not_pem)): "--tls-cert and --tls-key go together",
        ("a:1", "--tls-key", str(not_pem)): "--tls-cert and --tls-key go together",
        ("a:1", "--tls-server-name", "x"): "--tls-server-name needs TLS",
        ("a:1", "--tls-ca", missing): f"cannot read --tls-ca {missing}",
        ("a:1", "--tls-ca", str(not_pem)): f"--tls-ca {not_pem} is not PEM",
    }
    for args, reason in cases.items():
        probed = Probed(*args)
        assert probed.code == 64, (args, probed)
        assert probed.out == "", (args, probed)
        assert probed.err.startswith("error: ") and probed.err.count("\n") == 1, (args, probed)
        assert reason in probed.err, (args, probed)


def test_help_names_every_exit_code() -> None:
    probed = Probed("--help")
    assert probed.code == 0
    for code in ("0", "1", "2", "3", "4", "64"):
        assert f"\n{code:>4}  " in probed.out, code


def test_without_grpcio_the_probe_says_what_it_needs() -> None:
    done = subprocess.run(
        [sys.executable, "-c", "import sys; sys.modules['grpc_health'] = None\n"
         "from pygrpc_ffi.cli import main; sys.exit(main(['probe', '127.0.0.1:1']))"],
        cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert done.stderr.startswith("error: pygrpc-ffi probe needs grpcio and "
                                  "grpcio-health-checking")


def test_check_is_callable_from_python(health_server: Server) -> None:
    from pygrpc_ffi.probe import ProbeResult, check

    assert check(health_server.address, timeout=10) == ProbeResult(0, "status: SERVING")
    creds = grpc.ssl_channel_credentials()
    assert check(health_server.address, credentials=creds, timeout=0.5).exit_code == 2
