"""Handlers that report the caller's identity as JSON: e2e.Identity/Native
(pygrpc_ffi's request), NativeStream (the same from a request stream) and
Servicer (a grpcio servicer's context), for test_caller_identity.py."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import grpc

import pygrpc_ffi as pgf
from pygrpc_ffi.servicer import add_servicer

service = pgf.default_service()


def _report(auth: Mapping[str, Iterable[bytes]], key: str | None,
            identities: Iterable[bytes] | None) -> bytes:
    return json.dumps({
        "auth": {name: [v.decode("latin-1") for v in values] for name, values in auth.items()},
        "key": key,
        "identities": None if identities is None else [v.decode("latin-1") for v in identities],
    }).encode()


@service.method("e2e.Identity", "Native")
def native(request: pgf.GrpcRequest) -> bytes:
    return _report(request.auth_context, request.peer_identity_key, request.peer_identities)


@service.method("e2e.Identity", "NativeStream", request_streaming=True)
def native_stream(requests: Iterator[pgf.GrpcRequest]) -> bytes:
    """What the last message of a request stream says (streamed messages
    share their call's fields)."""
    messages = list(requests)
    assert len(messages) == 2
    return native(messages[-1])


class IdentityServicer:
    def Servicer(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        return _report(context.auth_context(), context.peer_identity_key(),
                       context.peer_identities())


def _register(servicer: IdentityServicer, server: Any) -> None:
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(
        "e2e.Identity", {"Servicer": grpc.unary_unary_rpc_method_handler(servicer.Servicer)})])


add_servicer(_register, IdentityServicer())
