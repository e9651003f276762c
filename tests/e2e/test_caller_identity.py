"""Handlers see who called, as grpcio shows it: ``auth_context()``,
``peer_identity_key()`` and ``peer_identities()`` of a grpcio servicer's
context, and ``GrpcRequest.auth_context`` / ``peer_identity_key`` /
``peer_identities`` of a native handler, under ``pygrpc-ffi serve`` on both
engines: mTLS with a client certificate with SANs and one without, TLS
without a client certificate, plaintext.  Handlers: identity_handlers.py."""

from __future__ import annotations

import json
import os
import pathlib
from collections.abc import Callable
from typing import Any

import grpc
import pytest
from conftest import CHANNEL_OPTIONS, ENGINES, Server
from tls_kit import Pki

import pygrpc_ffi as pgf

pytestmark = pytest.mark.timeout(120)

HOSTNAME = "localhost"
METHODS = ("/e2e.Identity/Native", "/e2e.Identity/Servicer")
MODULE = "identity_handlers"
# What every TLS connection has, as grpcio lists it (after x509_* and peer_*).
TLS_PROPERTIES = {"transport_security_type", "security_level", "ssl_session_reused",
                  "ssl_requested_server_name", "ssl_tls_version",
                  "ssl_negotiated_key_exchange_group"}
CERT_PROPERTIES = {"x509_subject", "x509_common_name", "x509_pem_cert"}
# Newer than gRPC 1.51, whose auth context the gRPC C++ host copies.
SINCE_GRPC_151 = {"ssl_requested_server_name", "ssl_tls_version",
                  "ssl_negotiated_key_exchange_group"}
GRPCPP_HOST = os.environ.get("PGF_HOST_BINARY", "").endswith("pygrpc_ffi_grpcpp_server")
Client = tuple[pathlib.Path, pathlib.Path]


@pytest.fixture()
def pki(tmp_path: pathlib.Path) -> Pki:
    return Pki(tmp_path)


def tls(pki: Pki, *, mtls: bool = True) -> tuple[str, ...]:
    flags = ("--tls-cert", str(pki.cert), "--tls-key", str(pki.key))
    return (*flags, "--tls-client-ca", str(pki.ca.cert)) if mtls else flags


def ask(server: Server, pki: Pki | None, client: Client | None = None) -> list[dict[str, Any]]:
    """What each handler saw, for one call each on one channel."""
    if pki is None:
        channel = grpc.insecure_channel(server.address, options=CHANNEL_OPTIONS)
    else:
        creds = grpc.ssl_channel_credentials(
            root_certificates=pki.ca.cert.read_bytes(),
            private_key=client[1].read_bytes() if client else None,
            certificate_chain=client[0].read_bytes() if client else None)
        channel = grpc.secure_channel(server.address, creds, options=[
            *CHANNEL_OPTIONS, ("grpc.ssl_target_name_override", HOSTNAME)])
    with channel:
        seen = [json.loads(channel.unary_unary(m)(b"", timeout=10)) for m in METHODS]
        stream = channel.stream_unary("/e2e.Identity/NativeStream")
        seen.append(json.loads(stream(iter([b"a", b"b"]), timeout=10)))
    # The native request (unary and streamed) and the servicer context agree.
    assert seen[0] == seen[1] == seen[2]
    return seen


def names(seen: dict[str, Any], engine: str) -> set[str]:
    """The property names seen, with those of newer gRPCs added for the gRPC
    C++ host (which has its gRPC's)."""
    found = set(seen["auth"])
    return found | SINCE_GRPC_151 if engine == "cxx" and GRPCPP_HOST else found


def security_type(engine: str) -> list[str]:
    """grpc's name for the server credentials: the gRPC C++ host serves
    with TlsServerCredentials ("tls"), grpcio and the nghttp2 host as
    grpcio's ssl_server_credentials ("ssl")."""
    return ["tls" if engine == "cxx" and GRPCPP_HOST else "ssl"]


@pytest.mark.parametrize("engine", ENGINES)
def test_client_certificate_with_sans(serving: Callable[..., Server], pki: Pki,
                                      engine: str) -> None:
    server = serving(engine, *tls(pki), module=MODULE)
    seen = ask(server, pki, pki.client)[0]
    auth = seen["auth"]
    sans = ["client-1.test", "spiffe://test/client-1"]
    assert seen["key"] == "x509_subject_alternative_name"
    assert seen["identities"] == sans
    assert names(seen, engine) == TLS_PROPERTIES | CERT_PROPERTIES | {
        "x509_subject_alternative_name", "peer_dns", "peer_uri", "peer_spiffe_id"}
    assert auth["transport_security_type"] == security_type(engine)
    assert auth["security_level"] == ["TSI_PRIVACY_AND_INTEGRITY"]
    assert auth["x509_subject"] == ["CN=client-1"]
    assert auth["x509_common_name"] == ["client-1"]
    assert auth["x509_subject_alternative_name"] == sans
    assert auth["peer_dns"] == ["client-1.test"]
    assert auth["peer_uri"] == auth["peer_spiffe_id"] == ["spiffe://test/client-1"]
    assert auth["x509_pem_cert"] == [pki.client[0].read_text()]
    assert auth.get("ssl_requested_server_name", [HOSTNAME]) == [HOSTNAME]


@pytest.mark.parametrize("engine", ENGINES)
def test_client_certificate_without_sans(serving: Callable[..., Server], pki: Pki,
                                         engine: str) -> None:
    client = pki.ca.issue("plain-client", "client-2", 3002, client=True, sans="")
    server = serving(engine, *tls(pki), module=MODULE)
    seen = ask(server, pki, client)[0]
    assert seen["key"] == "x509_common_name"
    assert seen["identities"] == ["client-2"]
    assert names(seen, engine) == TLS_PROPERTIES | CERT_PROPERTIES
    assert seen["auth"]["x509_common_name"] == ["client-2"]


@pytest.mark.parametrize("engine", ENGINES)
def test_tls_without_client_certificate(serving: Callable[..., Server], pki: Pki,
                                        engine: str) -> None:
    server = serving(engine, *tls(pki, mtls=False), module=MODULE)
    seen = ask(server, pki)[0]
    assert seen["key"] is None and seen["identities"] is None
    assert names(seen, engine) == TLS_PROPERTIES
    assert seen["auth"]["transport_security_type"] == security_type(engine)


@pytest.mark.parametrize("engine", ENGINES)
def test_plaintext(serving: Callable[..., Server], engine: str) -> None:
    seen = ask(serving(engine, module=MODULE), None)[0]
    assert seen == {"auth": {"transport_security_type": ["insecure"],
                             "security_level": ["TSI_SECURITY_NONE"]},
                    "key": None, "identities": None}


@pytest.mark.skipif(ENGINES != ["cxx", "grpcio"], reason="compares both engines")
def test_engines_answer_alike(serving: Callable[..., Server], pki: Pki) -> None:
    """Every SAN kind grpc prints (DNS, URI, email, IPv4, IPv6), two URIs (no
    SPIFFE ID then): the same properties from the host as from grpcio, but
    for the key exchange group each TLS library names."""
    client = pki.ca.issue("many-sans", "client-3", 3003, client=True,
                          sans="DNS:a.test,URI:spiffe://test/a,email:a@b.test,IP:10.0.0.1,"
                               "IP:::1,URI:https://b.test/x,DNS:c.test")
    seen = {}
    for engine in ENGINES:
        answer = ask(serving(engine, *tls(pki), module=MODULE), pki, client)[0]
        answer["auth"].pop("ssl_negotiated_key_exchange_group")
        seen[engine] = answer
    assert seen["cxx"] == seen["grpcio"]
    assert seen["cxx"]["identities"] == ["a.test", "spiffe://test/a", "a@b.test", "10.0.0.1",
                                         "::1", "https://b.test/x", "c.test"]
    assert seen["cxx"]["auth"]["peer_ip"] == ["10.0.0.1", "::1"]
    assert "peer_spiffe_id" not in seen["cxx"]["auth"]


def test_in_process_calls_have_no_identity() -> None:
    service = pgf.GrpcService()

    @service.method("e2e.Identity", "Native")
    def native(request: pgf.GrpcRequest) -> bytes:
        return json.dumps([request.auth_context, request.peer_identity_key,
                           request.peer_identities]).encode()

    result = service.call("e2e.Identity", "Native", b"")
    assert json.loads(bytes(result.payload)) == [{}, None, None]
