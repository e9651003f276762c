"""Test certificates for the TLS tests, made with the openssl command line
(P-256 keys, valid two days): CAs, and server or client certificates they
sign."""

from __future__ import annotations

import os
import pathlib
import subprocess


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def replace(path: pathlib.Path, data: bytes) -> None:
    """Writes data as path in one step (a rename), as cert-manager's
    Kubernetes secrets are replaced."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


class Ca:
    """A self-signed CA in directory (NAME.pem, NAME.key)."""

    def __init__(self, directory: pathlib.Path, name: str) -> None:
        self.directory = directory
        self.cert = directory / f"{name}.pem"
        self.key = directory / f"{name}.key"
        _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                 "-nodes", "-keyout", str(self.key), "-out", str(self.cert),
                 "-subj", f"/CN={name}", "-days", "2",
                 "-addext", "basicConstraints=critical,CA:TRUE",
                 "-addext", "keyUsage=critical,keyCertSign,cRLSign")

    def issue(self, name: str, cn: str, serial: int, *, client: bool = False,
              sans: str = "DNS:localhost,IP:127.0.0.1") -> tuple[pathlib.Path, pathlib.Path]:
        """A certificate for cn with this serial: (NAME.pem, NAME.key); sans
        "" for none."""
        cert = self.directory / f"{name}.pem"
        key = self.directory / f"{name}.key"
        csr = self.directory / f"{name}.csr"
        ext = self.directory / f"{name}.ext"
        ext.write_text((f"subjectAltName={sans}\n" if sans else "") + "basicConstraints=CA:FALSE\n"
                       f"extendedKeyUsage={'clientAuth' if client else 'serverAuth'}\n")
        _openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                 "-nodes", "-keyout", str(key), "-out", str(csr), "-subj", f"/CN={cn}")
        _openssl("x509", "-req", "-in", str(csr), "-CA", str(self.cert), "-CAkey", str(self.key),
                 "-set_serial", str(serial), "-days", "1", "-extfile", str(ext),
                 "-out", str(cert))
        return cert, key


class Pki:
    """A CA with a server certificate (serial 1001, CN server-1) and a client
    certificate, and another CA with a client certificate of its own."""

    def __init__(self, directory: pathlib.Path) -> None:
        self.directory = directory
        self.ca = Ca(directory, "ca")
        self.cert, self.key = self.ca.issue("server", "server-1", 1001)
        self.client = self.ca.issue("client", "client-1", 3001, client=True,
                                    sans="DNS:client-1.test,URI:spiffe://test/client-1")
        self.other_ca = Ca(directory, "other-ca")
        self.stranger = self.other_ca.issue("stranger", "client-1", 3001, client=True)
