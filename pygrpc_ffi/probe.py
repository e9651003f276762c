"""``pygrpc-ffi probe``: a gRPC health probe, as ``grpc_health_probe`` is.

    pygrpc-ffi probe ADDR [--service S] [--timeout SECONDS]
                          [--tls-ca CA.pem] [--tls-cert CERT.pem --tls-key KEY.pem]
                          [--tls-server-name NAME]

Calls ``grpc.health.v1.Health/Check`` on ADDR for service S ("" by default:
the server as a whole) and prints one line to stdout, ``status: NAME`` or
``error: WHY``.  Any TLS flag makes the channel TLS: ``--tls-ca`` is the
root to verify the server with (else the system's roots), ``--tls-cert``
and ``--tls-key`` a client certificate (mTLS), ``--tls-server-name`` the
name checked in the server's certificate (else ADDR's host).  The
connection and then the call each get ``--timeout`` seconds (default 1).

Exit codes:

   0  SERVING
   1  the probe cannot run (grpcio or grpcio-health-checking is missing)
   2  no connection within --timeout (nothing listens, or the TLS handshake
      failed)
   3  the call failed: any status but NOT_FOUND (UNIMPLEMENTED: the server
      has no health service; DEADLINE_EXCEEDED: no answer within --timeout)
   4  NOT_SERVING, SERVICE_UNKNOWN or UNKNOWN, or NOT_FOUND (the server does
      not know service S)
  64  bad usage: a bad flag, --tls-cert without --tls-key, a file that
      cannot be read (one "error: ..." line on stderr)

Needs grpcio and grpcio-health-checking (``pip install 'pygrpc_ffi[grpc]'``).
"""

from __future__ import annotations

import argparse
import pathlib
import sys
from collections.abc import Sequence
from typing import Any, NamedTuple, NoReturn

__all__ = ["CANNOT_RUN", "DEFAULT_TIMEOUT", "NO_CONNECTION", "RPC_FAILED", "SERVING",
           "UNHEALTHY", "USAGE", "ProbeResult", "build_parser", "check", "main"]

#: Exit codes, as documented above.
SERVING = 0
CANNOT_RUN = 1
NO_CONNECTION = 2
RPC_FAILED = 3
UNHEALTHY = 4
USAGE = 64  # EX_USAGE of sysexits.h

DEFAULT_TIMEOUT = 1.0
#: How long, once the connection timed out, a fail-fast call may take to
#: tell why (gRPC keeps the last connection error for it).
_REASON_SECONDS = 0.5


class ProbeResult(NamedTuple):
    """What :func:`check` found: the exit code and the line to print."""

    exit_code: int
    line: str


def check(target: str, service: str = "", *, credentials: Any = None,
          timeout: float = DEFAULT_TIMEOUT,
          options: Sequence[tuple[str, Any]] = ()) -> ProbeResult:
    """Asks ``target``'s health service for ``service``'s status.

    ``credentials``: ``grpc.ChannelCredentials`` (None: plaintext);
    ``options``: grpcio channel arguments.  The connection gets ``timeout``
    seconds, then the call as many.  Raises ImportError without grpcio or
    grpcio-health-checking."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc  # type: ignore[import-untyped]

    channel = (grpc.insecure_channel(target, options=list(options)) if credentials is None
               else grpc.secure_channel(target, credentials, options=list(options)))
    with channel:
        stub = health_pb2_grpc.HealthStub(channel)
        request = health_pb2.HealthCheckRequest(service=service)
        try:
            # Connect first, so that a server we cannot reach (2) is told
            # apart from a call that failed on one we reached (3).
            grpc.channel_ready_future(channel).result(timeout=timeout)
        except grpc.FutureTimeoutError:
            why = ""
            try:
                stub.Check(request, timeout=min(timeout, _REASON_SECONDS))
            except grpc.RpcError as err:
                why = f": {err.details()}" if err.code() is grpc.StatusCode.UNAVAILABLE else ""
            return ProbeResult(NO_CONNECTION,
                               f"error: no connection to {target} within {timeout:g}s{why}")
        try:
            answer = stub.Check(request, timeout=timeout)
        except grpc.RpcError as err:
            if err.code() is grpc.StatusCode.NOT_FOUND:
                return ProbeResult(UNHEALTHY,
                                   f"status: SERVICE_UNKNOWN (NOT_FOUND: {err.details()})")
            return ProbeResult(RPC_FAILED,
                               f"error: Health/Check failed: {err.code().name}: {err.details()}")
    statuses = health_pb2.HealthCheckResponse.ServingStatus
    name = (statuses.Name(answer.status) if answer.status in statuses.values()
            else str(answer.status))
    healthy = answer.status == health_pb2.HealthCheckResponse.SERVING
    return ProbeResult(SERVING if healthy else UNHEALTHY, f"status: {name}")


class _UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    """Bad usage exits 64 with one line: 2 means "no connection" here."""

    def error(self, message: str) -> NoReturn:
        self.exit(USAGE, f"error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The ``pygrpc-ffi probe`` command line."""
    doc = __doc__ or ""
    parser = _Parser(prog="pygrpc-ffi probe",
                     description="Asks a gRPC server's health service (grpc.health.v1) "
                                 "for a service's status.",
                     epilog=doc[doc.index("Exit codes:"):doc.index("Needs grpcio")].rstrip(),
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("address", metavar="ADDR",
                        help="the server: HOST:PORT, or any gRPC target (dns:///..., unix:...)")
    parser.add_argument("--service", default="",
                        help='the service whose status to ask (default "": the server)')
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, metavar="SECONDS",
                        help="for the connection, then for the call (default %(default)g)")
    tls = parser.add_argument_group("TLS (any of these: the channel is TLS)")
    tls.add_argument("--tls-ca", metavar="CA.pem",
                     help="PEM roots to verify the server with (default: the system's)")
    tls.add_argument("--tls-cert", metavar="CERT.pem",
                     help="a PEM client certificate chain (mTLS); needs --tls-key")
    tls.add_argument("--tls-key", metavar="KEY.pem", help="the PEM private key of --tls-cert")
    tls.add_argument("--tls-server-name", metavar="NAME",
                     help="the name to check in the server's certificate (default: ADDR's host)")
    return parser


def _read_pem(flag: str, path: str | None) -> bytes | None:
    if path is None:
        return None
    try:
        data = pathlib.Path(path).read_bytes()
    except OSError as exc:
        raise _UsageError(f"cannot read {flag} {path}: {exc.strerror or exc}") from None
    if b"-----BEGIN " not in data:
        raise _UsageError(f"{flag} {path} is not PEM")
    return data


def _channel_setup(args: argparse.Namespace) -> tuple[Any, list[tuple[str, Any]]]:
    """The credentials and channel options the flags ask for."""
    if args.timeout <= 0:
        raise _UsageError("--timeout must be more than 0")
    if (args.tls_cert is None) != (args.tls_key is None):
        raise _UsageError("--tls-cert and --tls-key go together")
    tls = any(value is not None for value in (args.tls_ca, args.tls_cert))
    if args.tls_server_name is not None and not tls:
        raise _UsageError("--tls-server-name needs TLS (--tls-ca or --tls-cert)")
    roots = _read_pem("--tls-ca", args.tls_ca)
    chain = _read_pem("--tls-cert", args.tls_cert)
    key = _read_pem("--tls-key", args.tls_key)
    if not tls:
        return None, []
    import grpc

    credentials = grpc.ssl_channel_credentials(root_certificates=roots, private_key=key,
                                               certificate_chain=chain)
    options = ([("grpc.ssl_target_name_override", args.tls_server_name)]
               if args.tls_server_name is not None else [])
    return credentials, options


def main(argv: Sequence[str] | None = None) -> int:
    """Runs ``pygrpc-ffi probe`` with ``argv`` (after ``probe``); returns the
    exit code."""
    args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    try:
        credentials, options = _channel_setup(args)
        result = check(args.address, args.service, credentials=credentials,
                       timeout=args.timeout, options=options)
    except _UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return USAGE
    except ImportError as exc:
        print(f"error: pygrpc-ffi probe needs grpcio and grpcio-health-checking "
              f"(pip install 'pygrpc_ffi[grpc]'): {exc}", file=sys.stderr)
        return CANNOT_RUN
    print(result.line, flush=True)
    return result.exit_code
