"""The TLS options of ``pygrpc-ffi serve``, on both engines.

    --tls-cert CERT.pem           serve TLS only, with this certificate chain
    --tls-key KEY.pem             ... and its private key
    --tls-client-ca CA.pem        require client certificates signed by CA (mTLS)
    --tls-reload-seconds N        check the files every N seconds (default 60;
                                  0: never); new connections get replaced
                                  files, a bad replacement keeps the old ones

The C++ host takes the flags as they are and loads, checks and reloads the
files itself (hosts/grpc_server/tls.cc).  The grpcio engine gets
:func:`server_credentials`: grpcio's dynamic credentials, whose fetcher
gRPC asks at each new handshake and which look at the files at most every
N seconds.  Both refuse bad files at start with one line and exit code 2.
"""

from __future__ import annotations

import argparse
import logging
import os
import ssl
import threading
import time
from typing import Any

__all__ = ["DEFAULT_RELOAD_SECONDS", "TlsFiles", "add_arguments", "check", "host_flags",
           "server_credentials"]

_log = logging.getLogger("pygrpc_ffi")
DEFAULT_RELOAD_SECONDS = 60
MAX_RELOAD_SECONDS = 365 * 24 * 3600


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds the TLS options to the ``serve`` subcommand's parser."""
    group = parser.add_argument_group("TLS (both engines)")
    group.add_argument("--tls-cert", default=None, metavar="CERT.pem",
                       help="serve TLS only, with this PEM certificate chain")
    group.add_argument("--tls-key", default=None, metavar="KEY.pem",
                       help="the PEM private key of --tls-cert")
    group.add_argument("--tls-client-ca", default=None, metavar="CA.pem",
                       help="require client certificates signed by these PEM CAs (mTLS)")
    group.add_argument("--tls-reload-seconds", type=int, default=DEFAULT_RELOAD_SECONDS,
                       metavar="N",
                       help="check the files every N seconds and use replaced ones for new "
                            "connections (default %(default)s; 0: never)")


class TlsFiles:
    """The certificate, key and client CA files, loaded and checked."""

    def __init__(self, cert: str, key: str, client_ca: str | None) -> None:
        self.cert, self.key, self.client_ca = cert, key, client_ca

    def paths(self) -> list[tuple[str, str]]:
        named = [("--tls-cert", self.cert), ("--tls-key", self.key)]
        if self.client_ca is not None:
            named.append(("--tls-client-ca", self.client_ca))
        return named

    def signature(self) -> tuple[Any, ...]:
        """What changes when a file is replaced (device, inode, size, mtime)."""
        out: list[Any] = []
        for _, path in self.paths():
            try:
                st = os.stat(path)
            except OSError:
                out.append(None)
            else:
                out.append((st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns))
        return tuple(out)

    def load(self) -> tuple[bytes, bytes, bytes | None]:
        """The files' bytes, checked: (cert, key, client CA).  ValueError
        with a one-line reason when a file cannot be read or used."""
        data: dict[str, bytes] = {}
        for flag, path in self.paths():
            try:
                with open(path, "rb") as f:
                    data[flag] = f.read()
            except OSError as exc:
                raise ValueError(f"cannot read {flag} {path}: {exc.strerror or exc}") from None
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        try:
            context.load_cert_chain(self.cert, self.key, password=lambda: b"")
        except ssl.SSLError as exc:
            raise ValueError(f"--tls-key {self.key} does not match the certificate of "
                             f"--tls-cert {self.cert}, or one of them is not PEM "
                             f"({exc.reason or exc})") from None
        except OSError as exc:
            raise ValueError(f"cannot load --tls-cert {self.cert}: {exc}") from None
        if self.client_ca is not None:
            try:
                context.load_verify_locations(cafile=self.client_ca)
            except (ssl.SSLError, OSError) as exc:
                raise ValueError(f"cannot load --tls-client-ca {self.client_ca}: "
                                 f"{getattr(exc, 'reason', None) or exc}") from None
        return data["--tls-cert"], data["--tls-key"], data.get("--tls-client-ca")


def check(args: argparse.Namespace) -> str | None:
    """What is wrong with the TLS options or their files, or None."""
    cert, key, ca = args.tls_cert, args.tls_key, args.tls_client_ca
    for flag, value in (("--tls-cert", cert), ("--tls-key", key), ("--tls-client-ca", ca)):
        if value is not None and not value:
            return f"{flag} needs a file"
    if (cert is None) != (key is None):
        return "--tls-cert and --tls-key go together"
    if ca is not None and cert is None:
        return "--tls-client-ca needs --tls-cert and --tls-key"
    if not 0 <= args.tls_reload_seconds <= MAX_RELOAD_SECONDS:
        return f"--tls-reload-seconds must be 0..{MAX_RELOAD_SECONDS}"
    if cert is None:
        return None
    try:
        TlsFiles(cert, key, ca).load()
    except ValueError as exc:
        return str(exc)
    return None


def host_flags(args: argparse.Namespace) -> list[str]:
    """The flags that pass the TLS options on to a child (the C++ host or a
    grpcio engine process)."""
    if args.tls_cert is None:
        return []
    flags = ["--tls-cert", args.tls_cert, "--tls-key", args.tls_key,
             "--tls-reload-seconds", str(args.tls_reload_seconds)]
    if args.tls_client_ca is not None:
        flags += ["--tls-client-ca", args.tls_client_ca]
    return flags


class _Reloader:
    """grpcio's certificate fetcher: a new configuration when the files
    changed and load, else None (gRPC keeps the one it has)."""

    def __init__(self, files: TlsFiles, reload_seconds: int, signature: tuple[Any, ...]) -> None:
        self.files = files
        self.reload_seconds = reload_seconds
        self.lock = threading.Lock()
        self.checked = time.monotonic()
        self.signature = signature  # of the files gRPC serves now
        self.refused: tuple[Any, ...] | None = None  # a bad replacement, logged once

    def __call__(self) -> Any:
        if self.reload_seconds == 0:
            return None
        now = time.monotonic()
        with self.lock:
            if now - self.checked < self.reload_seconds:
                return None
            self.checked = now
            signature = self.files.signature()
            if signature in (self.signature, self.refused):
                return None
            try:
                configuration = _configuration(self.files)
            except ValueError as exc:
                self.refused = signature
                _log.warning("TLS reload failed, new connections keep the previous "
                             "credentials: %s", exc)
                return None
            self.signature = signature
            _log.info("TLS credentials reloaded from %s", self.files.cert)
            return configuration


def _configuration(files: TlsFiles) -> Any:
    import grpc  # the grpcio engine's dependency, absent from a plain install

    cert, key, ca = files.load()
    return grpc.ssl_server_certificate_configuration([(key, cert)], root_certificates=ca)


def server_credentials(cert: str, key: str, client_ca: str | None = None,
                       reload_seconds: int = DEFAULT_RELOAD_SECONDS) -> Any:
    """grpcio server credentials for TLS (mTLS with ``client_ca``) that take
    replaced files for new connections, checked every ``reload_seconds``.
    ValueError with a one-line reason when the files cannot be used."""
    import grpc

    files = TlsFiles(cert, key, client_ca)
    signature = files.signature()
    initial = _configuration(files)
    return grpc.dynamic_ssl_server_credentials(
        initial, _Reloader(files, reload_seconds, signature),
        require_client_authentication=client_ca is not None)
