"""Interceptors: code that runs around every call of a :class:`GrpcService`.

Two styles, on both engines (the C++ host and the grpcio engine) and for the
four RPC kinds, for native handlers and grpcio servicers alike:

* grpcio's own ``grpc.ServerInterceptor`` and ``grpc.aio.ServerInterceptor``
  objects, unchanged: ``intercept_service(continuation, handler_call_details)``
  with ``handler_call_details.method`` ("/pkg.Service/Method") and
  ``.invocation_metadata``; returning None rejects the call with UNIMPLEMENTED
  "Method not found!" (as grpcio does); returning a wrapped
  ``RpcMethodHandler`` runs its behaviour with a grpcio-compatible
  ``ServicerContext``.  The first interceptor is the outermost, as in grpcio.
  A ``grpc.aio`` interceptor's ``intercept_service`` is a coroutine awaited
  on the package's event loop (where ``async def`` handlers run), as
  grpc.aio's server awaits it on its own: it may use the running loop and
  await anything (an async token check, ``asyncio.sleep``) before or after
  ``await continuation(...)``, and context variables it sets are seen by
  the handler.  The dispatching thread waits for it; a sync interceptor
  placed inside a ``grpc.aio`` one runs on a thread of the loop's executor,
  not on the loop.

* native :class:`Interceptor` objects, cheaper and simpler: ``before(call)``
  sees the request (service, method, metadata, peer, deadline) before the
  handler and may reject it by raising (a ``GrpcError`` for its status, any
  other exception mapped as a handler's is); ``after(call)`` sees the status,
  trailers and duration once the call is finished; ``on_request(call, msg)``
  and ``on_response(call, msg)`` see each message in and out (no copy: the
  request's ``payload_view`` is the zero-copy view).  Each hook may be ``async def``.
  Native interceptors run outside grpcio ones.

Where native hooks run (the rule: never blocking code on the package's event
loop, where every ``async def`` handler runs):

* ``async def`` hooks run on the event loop, awaited there (for a call of a
  sync handler, the dispatching thread waits for them); they must not block.
* sync hooks run on the thread that dispatched the call (a host's worker, or
  a thread of the package's own for ``async def`` handlers), except where
  the call is on the loop: ``on_request``/``on_response`` of an ``async
  def`` handler and ``after`` once its call is finished.  Those run on one
  of a few hook threads (``pygrpc_ffi-hooks``) and the call awaits them, so
  a sync hook may block (a slow log write, an exporter) and other calls go
  on.  The ``after`` hooks of such a call run in order on one hook thread
  (an ``async def`` one among them awaited on the loop from there), unless
  all of them are ``async def``: then they are awaited on the loop.
* hook jobs waiting for a thread are bounded by the queued-calls limit
  (``--max-queued-calls``): while that many wait, new calls of services with
  interceptors are refused at once with RESOURCE_EXHAUSTED, before any hook.
  A call dispatched from the loop thread itself (``GrpcService.acall`` from
  an ``async def`` handler, which runs a sync handler there too) runs its
  ``before`` hooks there.

The handler runs in a copy of the dispatching thread's ``contextvars``
context in which ``before`` hooks ran, so a context variable a hook sets
(an OpenTelemetry span, say) is seen by the handler, also by ``async def``
handlers and their tasks.
"""

from ._call import Interceptor, ServerCall, current_call
from ._chain import InterceptorChain
from ._grpcio import is_grpc_interceptor
from ._logging import install as _install_logging

__all__ = ["Interceptor", "InterceptorChain", "ServerCall", "current_call",
           "is_grpc_interceptor"]

_install_logging()
