"""Python acting as a host: calls built and dispatched from Python
(:class:`~pygrpc_ffi.GrpcService`'s in-process calls, the testing kit, the
grpcio engine), their request and response streams served here."""
