"""The observability, health and reflection options of ``pygrpc-ffi serve``,
and how each engine gets them.

    --interceptor MODULE:ATTRIBUTE   (repeatable) an interceptor for every call
    --access-log                     one line per RPC on stderr (pygrpc_ffi.access)
    --metrics-port PORT              serve Prometheus /metrics on PORT
    --metrics-host HOST              ... on HOST (default: the --listen host)
    --metrics-max-connections N      connections the metrics server holds (16)
    --metrics-header-timeout SECONDS time a client has to send its request (5)
    --health                         grpc.health.v1: "" and every service SERVING
    --reflection                     server reflection, v1 and v1alpha
    --drain-seconds SECONDS          on SIGTERM/SIGINT: NOT_SERVING, serve this long, stop

``MODULE:ATTRIBUTE`` names an interceptor object (grpcio or native), a class
to instantiate without arguments, or a factory function to call without
arguments (``opentelemetry.instrumentation.grpc:server_interceptor``).

The C++ host embeds Python and imports one module: with any of these
options, the CLI has it import :mod:`pygrpc_ffi.serve_setup` instead, which
imports the user's module and then adds the interceptors (given through the
environment), so the interceptors run inside the host; so too with
``--health`` and ``--reflection``.

Metrics with several processes: each server process keeps the shim's
metrics table in a file of a private directory (``PGF_METRICS_FILE``); the
supervising CLI process serves ``/metrics`` and sums every process's table
at each scrape (see :mod:`pygrpc_ffi.metrics`).  With the C++ host a single
process works the same way (the host is a child of the CLI); the grpcio
engine in one process serves its own table.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import os
import shutil
import sys
import tempfile
from collections.abc import Sequence
from typing import Any

from .access_log import enable_access_log
from .interceptors import Interceptor, is_grpc_interceptor
from .metrics import metrics_dir_files, start_metrics_server
from .metrics_server import DEFAULT_HEADER_TIMEOUT, DEFAULT_MAX_CONNECTIONS

__all__ = ["Supervision", "add_arguments", "apply", "check", "load_interceptor"]

ENV_MODULE = "PGF_SERVE_MODULE"
ENV_INTERCEPTORS = "PGF_SERVE_INTERCEPTORS"
ENV_ACCESS_LOG = "PGF_SERVE_ACCESS_LOG"
ENV_HEALTH = "PGF_SERVE_HEALTH"
ENV_REFLECTION = "PGF_SERVE_REFLECTION"
# pygrpc_ffi.health.SHARED_FILE_ENV (not imported: grpcio-health-checking is optional)
ENV_HEALTH_FILE = "PGF_HEALTH_FILE"
SETUP_MODULE = "pygrpc_ffi.serve_setup"
# What the C++ host imports when a stop signal arrives (its --stop-module).
STOP_MODULE = "pygrpc_ffi.serve_stop"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds the options to the ``serve`` subcommand's parser."""
    parser.add_argument("--interceptor", action="append", default=[], metavar="MODULE:ATTR",
                        help="an interceptor (grpcio or native) for every call; repeatable, "
                             "outermost first")
    parser.add_argument("--access-log", action="store_true",
                        help="log one line per RPC to stderr (logger pygrpc_ffi.access)")
    parser.add_argument("--metrics-port", type=int, default=None,
                        help="serve Prometheus metrics on this port (/metrics)")
    parser.add_argument("--metrics-host", default=None,
                        help="address of the metrics server (default: the --listen host)")
    parser.add_argument("--metrics-max-connections", type=int,
                        default=DEFAULT_MAX_CONNECTIONS, metavar="N",
                        help="connections the metrics server holds at once; beyond them a "
                             "new one replaces the oldest idle one (default %(default)s)")
    parser.add_argument("--metrics-header-timeout", type=float,
                        default=DEFAULT_HEADER_TIMEOUT, metavar="SECONDS",
                        help="seconds a metrics client has to send its request before it "
                             "is disconnected (default %(default)s)")
    parser.add_argument("--health", action="store_true",
                        help="serve grpc.health.v1.Health: \"\" and every registered "
                             "service SERVING (pygrpc_ffi.health.set_status changes them)")
    parser.add_argument("--reflection", action="store_true",
                        help="serve server reflection, v1 and v1alpha")
    parser.add_argument("--drain-seconds", type=float, default=0.0, metavar="SECONDS",
                        help="on SIGTERM/SIGINT every health status goes NOT_SERVING and "
                             "the shutdown callbacks run (pygrpc_ffi.shutdown), then the "
                             "server keeps serving this long before it stops "
                             "(default %(default)s)")


def check(args: argparse.Namespace) -> str | None:
    """What is wrong with the options, or None."""
    if args.metrics_max_connections < 1:
        return "--metrics-max-connections must be at least 1"
    if not args.metrics_header_timeout > 0:
        return "--metrics-header-timeout must be positive"
    if not 0 <= args.drain_seconds <= 86400:
        return "--drain-seconds must be in 0..86400"
    return None


def _start_metrics_server(args: argparse.Namespace, files: list[str] | None = None) -> Any:
    host = args.metrics_host or args.listen.rpartition(":")[0] or "0.0.0.0"
    server = start_metrics_server(args.metrics_port, host.strip("[]"), files=files,
                                  max_connections=args.metrics_max_connections,
                                  header_timeout=args.metrics_header_timeout)
    print(f"metrics on {host}:{args.metrics_port}/metrics", file=sys.stderr, flush=True)
    return server


def load_interceptor(spec: str) -> Any:
    """The interceptor named by ``module:attribute``: the object, an
    instance of the class, or what the factory function returns.
    ValueError for a malformed spec; ImportError/AttributeError if absent."""
    module_name, sep, attribute = spec.partition(":")
    if not sep or not module_name or not attribute:
        raise ValueError(f"--interceptor takes MODULE:ATTRIBUTE, not {spec!r}")
    target: Any = importlib.import_module(module_name)
    for part in attribute.split("."):
        target = getattr(target, part)
    if inspect.isclass(target) or (not _is_interceptor(target) and callable(target)):
        target = target()
    if not _is_interceptor(target):
        raise TypeError(f"{spec} is not an interceptor (grpcio or pygrpc_ffi)")
    return target


def _is_interceptor(obj: Any) -> bool:
    return not inspect.isclass(obj) and (is_grpc_interceptor(obj) or isinstance(obj, Interceptor))


def apply(service: Any, interceptors: Sequence[str], access_log: bool,
          health: bool = False, reflection: bool = False) -> None:
    """Adds the named interceptors and, if asked, the access log, reflection
    and health (last, so that it knows every service) to a service."""
    if access_log:
        enable_access_log(service)
    for spec in interceptors:
        service.add_interceptor(load_interceptor(spec))
    # grpcio-reflection and grpcio-health-checking are needed only then.
    if reflection:
        from .reflection import enable_reflection
        enable_reflection(service)
    if health:
        from .health import enable_health
        enable_health(service)


def wanted(args: argparse.Namespace) -> bool:
    """Whether any option a server process needs in its environment was given."""
    return bool(args.interceptor or args.access_log or args.metrics_port is not None
                or args.health or args.reflection)


def host_module(args: argparse.Namespace) -> str:
    """The module the C++ host is to import."""
    setup = args.interceptor or args.access_log or args.health or args.reflection
    return SETUP_MODULE if setup else str(args.module)


def host_flags(args: argparse.Namespace) -> list[str]:
    """The C++ host's shutdown flags: the drain, and the module that begins it."""
    return ["--stop-module", STOP_MODULE, "--drain-seconds", str(args.drain_seconds)]


def child_flags(args: argparse.Namespace) -> list[str]:
    """Options a grpcio child process gets (metrics are the supervisor's)."""
    flags: list[str] = []
    for spec in args.interceptor:
        flags += ["--interceptor", spec]
    if args.access_log:
        flags.append("--access-log")
    if args.health:
        flags.append("--health")
    if args.reflection:
        flags.append("--reflection")
    return [*flags, "--drain-seconds", str(args.drain_seconds)]


class Supervision:
    """The supervisor's side: the children's environment (their metrics
    files, the host's setup) and the metrics server summing them."""

    def __init__(self, args: argparse.Namespace, processes: int, cxx: bool) -> None:
        self.args = args
        self.processes = processes
        self.cxx = cxx
        self.directory: str | None = None
        self.health_directory: str | None = None
        self.server: Any = None
        if args.metrics_port is not None:
            self.directory = tempfile.mkdtemp(prefix="pgf-metrics-")
        if processes > 1:
            # One health state for every process, however health was added.
            self.health_directory = tempfile.mkdtemp(prefix="pgf-health-")

    def child_envs(self) -> list[dict[str, str]] | None:
        """One environment per child, or None if nothing is to be passed."""
        if not wanted(self.args) and self.health_directory is None:
            return None
        envs = []
        for index in range(self.processes):
            env = dict(os.environ)
            if self.directory is not None:
                env["PGF_METRICS_FILE"] = os.path.join(self.directory,
                                                       f"pgf-metrics-{index}.bin")
            if self.health_directory is not None:
                env[ENV_HEALTH_FILE] = os.path.join(self.health_directory, "health.json")
            if self.cxx:
                env[ENV_MODULE] = self.args.module
                env[ENV_INTERCEPTORS] = "\n".join(self.args.interceptor)
                env[ENV_ACCESS_LOG] = "1" if self.args.access_log else ""
                env[ENV_HEALTH] = "1" if self.args.health else ""
                env[ENV_REFLECTION] = "1" if self.args.reflection else ""
            envs.append(env)
        return envs

    def start_metrics(self) -> None:
        """Serves /metrics: the sum of every child's table."""
        if self.directory is None:
            return
        self.server = _start_metrics_server(self.args, metrics_dir_files(self.directory))

    def close(self) -> None:
        if self.server is not None:
            self.server.shutdown()
        for directory in (self.directory, self.health_directory):
            if directory is not None:
                shutil.rmtree(directory, ignore_errors=True)


def serve_here(args: argparse.Namespace, service: Any) -> None:
    """In a grpcio engine process: interceptors, access log, reflection,
    health, and (when it is the only process) its own metrics server."""
    apply(service, args.interceptor, args.access_log, args.health, args.reflection)
    if args.metrics_port is not None:
        _start_metrics_server(args)
