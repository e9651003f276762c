"""gRPC server reflection (``grpc.reflection.v1.ServerReflection`` and
``grpc.reflection.v1alpha.ServerReflection``).

::

    from pygrpc_ffi.reflection import add_reflection

    reflection = add_reflection(service)
    reflection.answer(reflection_pb2.ServerReflectionRequest(list_services=""))

:meth:`ReflectionServicer.answer` computes the answer to one reflection
request: the services registered in the GrpcService (listed live from its C
registry, so services registered later are listed too), the file that
defines a name, or a file by name, with its transitive dependencies, from a
protobuf descriptor pool (default: the default pool, which holds every
imported ``*_pb2`` module).

``ServerReflectionInfo`` is the bidirectional stream that clients
(grpcurl, grpcio-reflection's ``ProtoReflectionDescriptorDatabase``) use:
one :meth:`answer` per request, in order, until the client half-closes.  It
runs as an ``async def`` on the package's event loop, so a client that keeps
its reflection stream open holds no worker thread.  Needs
``grpcio-reflection``.

v1 and v1alpha are the same protocol under two package names; one servicer
answers both, each request in its own version's messages.  grpcio-reflection
ships v1's Python module only in some releases: without it, v1's file is
made from v1alpha's by renaming the package, and added to the default pool
(so reflection describes itself either way).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from types import SimpleNamespace
from typing import Any

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from grpc_reflection.v1alpha import (  # type: ignore[import-untyped]
    reflection_pb2,
    reflection_pb2_grpc,
)

from .service import GrpcService, default_service
from .servicer import ServicerTarget
from .status import StatusCode

__all__ = ["SERVICE_NAME", "SERVICE_NAME_V1", "VERSIONS", "ReflectionServicer",
           "add_reflection", "enable_reflection"]

#: The full name of the v1alpha reflection service.
SERVICE_NAME: str = reflection_pb2.DESCRIPTOR.services_by_name["ServerReflection"].full_name
#: The full name of the v1 reflection service.
SERVICE_NAME_V1 = "grpc.reflection.v1.ServerReflection"
#: The versions :func:`add_reflection` serves by default.
VERSIONS = ("v1", "v1alpha")
_V1_FILE = "grpc/reflection/v1/reflection.proto"
_MESSAGES = ("ServerReflectionRequest", "ServerReflectionResponse", "ErrorResponse",
             "ListServiceResponse", "ServiceResponse", "FileDescriptorResponse",
             "ExtensionNumberResponse")


def _v1_messages() -> Any:
    """v1's message classes, as a module-like namespace."""
    try:
        from grpc_reflection.v1 import reflection_pb2 as v1  # type: ignore[import-untyped]
        return v1
    except ImportError:
        pass
    pool = descriptor_pool.Default()
    try:
        file = pool.FindFileByName(_V1_FILE)
    except KeyError:
        proto = descriptor_pb2.FileDescriptorProto()
        reflection_pb2.DESCRIPTOR.CopyToProto(proto)
        old, new = f".{proto.package}.", ".grpc.reflection.v1."
        proto.name, proto.package = _V1_FILE, "grpc.reflection.v1"
        for message in proto.message_type:
            for field in message.field:
                if field.type_name.startswith(old):
                    field.type_name = new + field.type_name[len(old):]
        for method in proto.service[0].method:
            method.input_type = new + method.input_type[len(old):]
            method.output_type = new + method.output_type[len(old):]
        proto.options.Clear()
        pool.Add(proto)
        file = pool.FindFileByName(_V1_FILE)
    return SimpleNamespace(**{name: message_factory.GetMessageClass(
        file.message_types_by_name[name]) for name in _MESSAGES})


_PB2 = {"v1alpha": reflection_pb2, "v1": _v1_messages()}
_SERVICE_NAMES = {"v1alpha": SERVICE_NAME, "v1": SERVICE_NAME_V1}


def _messages_of(request: Any) -> Any:
    """The version's messages that ``request`` is one of."""
    return _PB2["v1" if request.DESCRIPTOR is _PB2["v1"].ServerReflectionRequest.DESCRIPTOR
                else "v1alpha"]


def _error(request: Any, code: StatusCode, message: str) -> Any:
    pb2 = _messages_of(request)
    return pb2.ServerReflectionResponse(
        error_response=pb2.ErrorResponse(error_code=int(code), error_message=message),
        original_request=request,
    )


def _with_dependencies(file: Any) -> list[Any]:
    """The file and its transitive dependencies, the file first."""
    seen: dict[str, Any] = {}
    stack = [file]
    while stack:
        current = stack.pop()
        if current.name in seen:
            continue
        seen[current.name] = current
        stack.extend(reversed(current.dependencies))
    return list(seen.values())


def _files(request: Any, file: Any) -> Any:
    protos = []
    for each in _with_dependencies(file):
        proto = descriptor_pb2.FileDescriptorProto()
        each.CopyToProto(proto)
        protos.append(proto.SerializeToString())
    pb2 = _messages_of(request)
    return pb2.ServerReflectionResponse(
        file_descriptor_response=pb2.FileDescriptorResponse(
            file_descriptor_proto=protos),
        original_request=request,
    )


class ReflectionServicer(reflection_pb2_grpc.ServerReflectionServicer):  # type: ignore[misc]
    """Answers reflection requests about a GrpcService's services."""

    def __init__(self, service: GrpcService | None = None, pool: Any = None,
                 extra_services: Iterable[str] = ()) -> None:
        self.service = service if service is not None else default_service()
        self.pool = pool if pool is not None else descriptor_pool.Default()
        self.extra_services = tuple(extra_services)

    def service_names(self) -> list[str]:
        """The services to list: every service registered in the GrpcService
        (this one included, once added), plus ``extra_services``; sorted."""
        return sorted({*self.service.list_services(), *self.extra_services})

    def _file_containing(self, symbol: str) -> Any:
        """The file that defines ``symbol``: a message, field, enum, enum
        value, extension, service, or method (``pkg.Service.Method``, which
        some protobuf pools do not index); KeyError if none."""
        try:
            return self.pool.FindFileContainingSymbol(symbol)
        except KeyError:
            parent, _, name = symbol.rpartition(".")
            if not parent:
                raise
        try:
            service = self.pool.FindServiceByName(parent)
        except KeyError:
            service = None
        if service is not None and name in service.methods_by_name:
            return service.file
        enum = self.pool.FindEnumTypeByName(parent)  # KeyError if not an enum either
        if name not in enum.values_by_name:
            raise KeyError(symbol)
        return enum.file

    def answer(self, request: Any) -> Any:
        """The ``ServerReflectionResponse`` to one ``ServerReflectionRequest``;
        what it cannot find is an ``error_response`` with NOT_FOUND."""
        which = request.WhichOneof("message_request")
        pb2 = _messages_of(request)
        try:
            if which == "list_services":
                return pb2.ServerReflectionResponse(
                    list_services_response=pb2.ListServiceResponse(
                        service=[pb2.ServiceResponse(name=name)
                                 for name in self.service_names()]),
                    original_request=request,
                )
            if which == "file_by_filename":
                return _files(request, self.pool.FindFileByName(request.file_by_filename))
            if which == "file_containing_symbol":
                return _files(request, self._file_containing(request.file_containing_symbol))
            if which == "file_containing_extension":
                wanted = request.file_containing_extension
                message = self.pool.FindMessageTypeByName(wanted.containing_type)
                extension = self.pool.FindExtensionByNumber(message, wanted.extension_number)
                return _files(request, self.pool.FindFileContainingSymbol(extension.full_name))
            if which == "all_extension_numbers_of_type":
                message = self.pool.FindMessageTypeByName(request.all_extension_numbers_of_type)
                numbers = sorted(ext.number for ext in self.pool.FindAllExtensions(message))
                return pb2.ServerReflectionResponse(
                    all_extension_numbers_response=pb2.ExtensionNumberResponse(
                        base_type_name=message.full_name, extension_number=numbers),
                    original_request=request,
                )
        except KeyError:
            return _error(request, StatusCode.NOT_FOUND, "not found")
        return _error(request, StatusCode.INVALID_ARGUMENT, "invalid argument")

    async def ServerReflectionInfo(self, request_iterator: AsyncIterator[Any],
                                   context: Any) -> AsyncIterator[Any]:
        """The streaming RPC: one answer per request."""
        async for request in request_iterator:
            yield self.answer(request)


def add_reflection(service: GrpcService | None = None, pool: Any = None,
                   extra_services: Iterable[str] = (),
                   versions: Iterable[str] = VERSIONS) -> ReflectionServicer:
    """Registers ``grpc.reflection.v1.ServerReflection`` and
    ``grpc.reflection.v1alpha.ServerReflection`` (``versions``) in
    ``service`` (default: :func:`~pygrpc_ffi.default_service`) and returns
    the servicer that answers both."""
    servicer = ReflectionServicer(service, pool, extra_services)
    target = ServicerTarget(servicer.service)
    for version in versions:
        if version not in _PB2:
            raise ValueError(f"unknown reflection version {version!r}; expected one of "
                             f"{', '.join(VERSIONS)}")
        pb2 = _PB2[version]
        target.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
            _SERVICE_NAMES[version], {"ServerReflectionInfo": grpc.stream_stream_rpc_method_handler(
                servicer.ServerReflectionInfo,
                request_deserializer=pb2.ServerReflectionRequest.FromString,
                response_serializer=pb2.ServerReflectionResponse.SerializeToString)}),))
    return servicer


def enable_reflection(service: GrpcService | None = None) -> ReflectionServicer | None:
    """What ``--reflection`` does: :func:`add_reflection` for the versions
    that ``service`` does not serve yet; None if it serves both."""
    service = service if service is not None else default_service()
    registered = set(service.list_services())
    missing = [v for v in VERSIONS if _SERVICE_NAMES[v] not in registered]
    return add_reflection(service, versions=missing) if missing else None
