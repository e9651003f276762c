"""The package as users get it: an sdist and a wheel built from a clean copy of
the sources, installed into a fresh venv with the source tree out of reach.

The wheel must hold the shim, the cffi module, the header and the build
files; the core must import with cffi alone; C hosts must build against the
installed package through ``config``, pkg-config and CMake; the grpcio
engine must serve after ``pip install``; and, where libgrpc++-dev is
present, ``pygrpc-ffi build-host`` must build a C++ host that serves.
"""

from __future__ import annotations

import importlib.util
import os
import pathlib
import shutil
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Iterator
from typing import Any

import pytest

TESTS_DIR = pathlib.Path(__file__).resolve().parent
ROOT = TESTS_DIR.parent
pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


def run(*command: str | os.PathLike[str], cwd: pathlib.Path | None = None,
        env: dict[str, str] | None = None, timeout: float = 300) -> str:
    result = subprocess.run([str(c) for c in command], cwd=cwd, capture_output=True, text=True,
                            env=env, timeout=timeout)
    assert result.returncode == 0, (
        f"{' '.join(map(str, command))} failed ({result.returncode}):\n"
        f"{result.stdout[-4000:]}\n{result.stderr[-4000:]}")
    return result.stdout


@pytest.fixture(scope="module")
def dists(tmp_path_factory: pytest.TempPathFactory) -> dict[str, pathlib.Path]:
    """sdist and wheel, built from a clean copy of the tracked sources (the
    wheel from the unpacked sdist, which proves the sdist is complete)."""
    work = tmp_path_factory.mktemp("dist")
    clean = work / "src"
    files = run("git", "ls-files", "-z", "--cached", "--others", "--exclude-standard",
                cwd=ROOT).split("\0")
    for name in filter(None, files):
        source = ROOT / name
        if source.is_file():
            (clean / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, clean / name)
    out = work / "out"
    # --no-isolation: this venv already has setuptools and cffi (the
    # isolated build, `pip install .`, is the same setup.py).
    run(sys.executable, "-m", "build", "--no-isolation", "--outdir", out, clean)
    (sdist,) = out.glob("*.tar.gz")
    (wheel,) = out.glob("*.whl")
    return {"sdist": sdist, "wheel": wheel}


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory,
         dists: dict[str, pathlib.Path]) -> Iterator[pathlib.Path]:
    """A fresh venv with only the wheel (and cffi) installed."""
    path = tmp_path_factory.mktemp("venv") / "venv"
    run(sys.executable, "-m", "venv", path)
    run(path / "bin" / "python", "-m", "pip", "install", "-q", dists["wheel"])
    site = run(path / "bin" / "python", "-c", "import pygrpc_ffi; print(pygrpc_ffi.__file__)",
               cwd=path.parent)
    assert site.startswith(str(path)), site
    yield path


def installed(venv: pathlib.Path, *args: str) -> str:
    # Run outside the source tree: `python -m` puts the cwd first on sys.path.
    return run(venv / "bin" / "python", "-m", "pygrpc_ffi", "config", *args,
               cwd=venv.parent).strip()


def test_wheel_and_sdist_contents(dists: dict[str, pathlib.Path]) -> None:
    names = set(zipfile.ZipFile(dists["wheel"]).namelist())
    for required in ("pygrpc_ffi/libpygrpc_ffi.so", "pygrpc_ffi/include/pygrpc_ffi.h",
                     "pygrpc_ffi/py.typed", "pygrpc_ffi/pkgconfig/pygrpc_ffi.pc",
                     "pygrpc_ffi/cmake/pygrpc_ffiConfig.cmake",
                     "pygrpc_ffi/cmake/pygrpc_ffiConfigVersion.cmake",
                     "pygrpc_ffi/host_src/CMakeLists.txt", "pygrpc_ffi/host_src/main.cc",
                     "pygrpc_ffi/host_src/h2/main.cc", "pygrpc_ffi/host_src/h2/h2_call.cc",
                     "pygrpc_ffi/host_src/memory_budget.cc", "pygrpc_ffi/cli.py",
                     # the C++ library (pygrpc_ffi::grpc): its header and sources
                     "pygrpc_ffi/include/pygrpc_ffi/grpc.hpp",
                     "pygrpc_ffi/host_src/grpcpp/pygrpc_ffi_grpc.cmake",
                     "pygrpc_ffi/host_src/grpcpp/python_service.cc",
                     "pygrpc_ffi/host_src/python.cc"):
        assert required in names
    natives = [n for n in names if n.startswith("pygrpc_ffi/_native")]
    # The limited API of 3.11 (the fast path needs its buffer protocol); a
    # wheel of its own on 3.10.
    if sys.version_info >= (3, 11):
        assert natives == ["pygrpc_ffi/_native.abi3.so"]
        tag = "cp311-abi3"
    else:
        assert natives == ["pygrpc_ffi/_native.cpython-310-x86_64-linux-gnu.so"]
        tag = "cp310-cp310"
    # One shim: the cffi module links it, it does not contain it.
    assert not any(n.endswith(".c") or "/csrc/" in n for n in names)
    assert dists["wheel"].name.startswith(f"pygrpc_ffi-0.4.0-{tag}-linux_")

    with tarfile.open(dists["sdist"]) as sdist:
        members = {m.split("/", 1)[1] for m in sdist.getnames() if "/" in m}
    for required in ("setup.py", "pyproject.toml", "pygrpc_ffi/_binding/build.py", "README.md",
                     "MANIFEST.in",
                     "csrc/pygrpc_ffi.h", "csrc/embed.c", "csrc/Makefile",
                     "pygrpc_ffi/_binding/unary.c", "pygrpc_ffi/_binding/unary.h",
                     "hosts/grpc_server/CMakeLists.txt", "hosts/grpc_server/h2/h2_server.cc",
                     "hosts/grpc_server/h2/README.md",
                     "hosts/grpc_server/include/pygrpc_ffi/grpc.hpp",
                     "hosts/grpc_server/grpcpp/pygrpc_ffi_grpc.cmake",
                     "pygrpc_ffi/cmake/pygrpc_ffiConfig.cmake"):
        assert required in members
    sources = {p.name for p in (ROOT / "csrc").glob("*.c")}
    assert sources <= {m.split("/")[-1] for m in members if m.startswith("csrc/")}
    assert not any(m.endswith(".so") for m in members)


def test_shim_needs_only_libc(venv: pathlib.Path) -> None:
    package = pathlib.Path(installed(venv, "--libdir"))
    shim = package / "libpygrpc_ffi.so"
    dynamic = run("readelf", "-d", shim)
    needed = {line.split("[")[1].rstrip("]") for line in dynamic.splitlines()
              if "(NEEDED)" in line}
    allowed = {"libc.so.6", "libdl.so.2", "libpthread.so.0", "ld-linux-x86-64.so.2",
               "ld-linux-aarch64.so.1"}
    assert needed and needed <= allowed, needed
    assert "Library soname: [libpygrpc_ffi.so]" in dynamic
    assert "RPATH" not in dynamic and "RUNPATH" not in dynamic
    # Only the ABI is exported.
    exported = [line.split()[-1] for line in run("nm", "-D", "--defined-only", shim).splitlines()]
    assert exported and all(name.startswith("pgf_") for name in exported), exported
    # The cffi module links the shim by SONAME and finds it beside itself;
    # no build machine's path is baked in.
    native = run("readelf", "-d", next(package.glob("_native*.so")))
    assert "Shared library: [libpygrpc_ffi.so]" in native
    runpaths = [line for line in native.splitlines() if "RUNPATH" in line or "RPATH" in line]
    assert runpaths and all(line.endswith("[$ORIGIN]") for line in runpaths), runpaths


def test_core_works_with_cffi_only(venv: pathlib.Path, tmp_path: pathlib.Path) -> None:
    out = run(venv / "bin" / "python", TESTS_DIR / "packaging_smoke.py", ROOT, "--no-grpc",
              cwd=tmp_path)
    assert out.startswith("smoke ok: pygrpc_ffi 0.4.0")
    installed_names = run(venv / "bin" / "python", "-m", "pip", "list", "--format=freeze",
                          cwd=tmp_path)
    assert "grpcio" not in installed_names and "protobuf" not in installed_names


def _host_dir(venv: pathlib.Path, tmp_path: pathlib.Path) -> pathlib.Path:
    """A directory laid out as examples/minimal_host.c expects: .venv and
    examples/greeter.py (copied: no source tree)."""
    host = tmp_path / "host"
    (host / "examples").mkdir(parents=True)
    for name in ("__init__.py", "greeter.py"):
        shutil.copy2(ROOT / "examples" / name, host / "examples" / name)
    (host / ".venv").symlink_to(venv)
    shutil.copy2(ROOT / "examples" / "minimal_host.c", host / "minimal_host.c")
    return host


def _run_minimal_host(binary: pathlib.Path, host: pathlib.Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    assert run(binary, cwd=host, env=env).strip() == "status 0: Hello, C host!"


def test_minimal_host_builds_against_the_installed_package(
        venv: pathlib.Path, tmp_path: pathlib.Path) -> None:
    host = _host_dir(venv, tmp_path)
    # python -m pygrpc_ffi config --cflags --libs
    flags = installed(venv, "--cflags", "--libs").split()
    assert any(f.startswith("-I") and "site-packages" in f for f in flags)
    cflags, libs = [f for f in flags if f.startswith("-I")], [f for f in flags
                                                            if not f.startswith("-I")]
    run("cc", "-std=c99", "-Wall", "-Wextra", "-Werror", *cflags, "minimal_host.c", *libs,
        "-o", "host_config", cwd=host)
    _run_minimal_host(host / "host_config", host)

    # pkg-config
    env = dict(os.environ, PKG_CONFIG_PATH=installed(venv, "--pkgconfigdir"))
    assert run("pkg-config", "--modversion", "pygrpc_ffi", env=env).strip() == "0.4.0"
    pc_flags = run("pkg-config", "--cflags", "--libs", "pygrpc_ffi", env=env).split()
    run("cc", "-std=c99", "-Wall", "-Werror", "minimal_host.c", *pc_flags, "-o", "host_pc",
        cwd=host)
    _run_minimal_host(host / "host_pc", host)

    # CMake: find_package(pygrpc_ffi) and the imported target
    (host / "CMakeLists.txt").write_text(
        "cmake_minimum_required(VERSION 3.16)\n"
        "project(minimal_host C)\n"
        "find_package(pygrpc_ffi 0.2 CONFIG REQUIRED)\n"
        "add_executable(host_cmake minimal_host.c)\n"
        "target_link_libraries(host_cmake PRIVATE pygrpc_ffi::pygrpc_ffi)\n")
    build = host / "build"
    run("cmake", "-S", host, "-B", build, f"-DCMAKE_PREFIX_PATH={installed(venv, '--prefix')}")
    run("cmake", "--build", build)
    _run_minimal_host(build / "host_cmake", host)
    # Every build links the installed shim, not the source tree's.
    linked = run("ldd", build / "host_cmake")
    assert f"{installed(venv, '--libdir')}/libpygrpc_ffi.so" in linked


def _serve_and_call(command: list[str], cwd: pathlib.Path, env: dict[str, str]) -> str:
    import grpc

    proc = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("listening on "), (line, proc.stderr and proc.stderr.read())
        with grpc.insecure_channel(line.split(" ", 2)[2].strip()) as channel:
            answer = channel.unary_unary("/demo.Greeter/SayHello")(b"wheel", timeout=20)
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert answer == b"Hello, wheel!"
    return err


def test_pip_install_serves_with_the_grpcio_engine(
        venv: pathlib.Path, tmp_path: pathlib.Path) -> None:
    run(venv / "bin" / "python", "-m", "pip", "install", "-q", "grpcio>=1.80", "protobuf>=5",
        cwd=venv.parent)
    host = _host_dir(venv, tmp_path)
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PGF_HOST_BINARY")}
    err = _serve_and_call([str(venv / "bin" / "pygrpc-ffi"), "serve", "examples.greeter",
                           "--listen", "127.0.0.1:0"], host, env)
    assert "grpcio engine" in err


@pytest.mark.skipif(shutil.which("cmake") is None or subprocess.run(
    ["pkg-config", "--exists", "libnghttp2"]).returncode != 0,
    reason="needs libnghttp2-dev and cmake")
def test_build_host_against_the_installed_package(
        venv: pathlib.Path, tmp_path: pathlib.Path) -> None:
    binary = pathlib.Path(run(venv / "bin" / "pygrpc-ffi", "build-host", "--jobs", "2",
                              cwd=tmp_path, timeout=900).strip())
    assert binary == venv / "bin" / "pygrpc_ffi_server"
    linked = run("ldd", binary)
    assert f"{installed(venv, '--libdir')}/libpygrpc_ffi.so" in linked
    # The product host: the patched libnghttp2 transport, not gRPC C++ 1.51.
    assert "libnghttp2.so" in linked and "libgrpc" not in linked
    host = _host_dir(venv, tmp_path)
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PGF_HOST_BINARY")}
    err = _serve_and_call([str(venv / "bin" / "pygrpc-ffi"), "serve", "examples.greeter",
                           "--listen", "127.0.0.1:0", "--engine", "cxx"], host, env)
    assert "grpcio engine" not in err


# The C++ library (pygrpc_ffi::grpc, docs/cxx_library.md): examples/cxx_server
# built against the installed wheel with CMake, once, under ASan + UBSan, and
# served to a grpcio client: a compiled C++ method, Python methods of every
# kind, the server's own fallback service, then SIGTERM.
CXX_EXAMPLE = ROOT / "examples" / "cxx_server"
SANITIZER_REPORTS = ("ERROR: AddressSanitizer", "runtime error:", "SUMMARY: ",
                     "ERROR: LeakSanitizer")


def _cxx_library_missing() -> list[str]:
    missing = [tool for tool in ("cmake", "pkg-config", "c++", "protoc", "grpc_cpp_plugin")
               if shutil.which(tool) is None]
    if not missing:
        missing += [f"{module} (pkg-config)" for module in ("grpc++", "protobuf")
                    if subprocess.run(["pkg-config", "--exists", module]).returncode != 0]
    return missing


class CxxServer:
    def __init__(self, proc: subprocess.Popen[str], address: str, greeter: object,
                 binary: pathlib.Path, env: dict[str, str]) -> None:
        self.proc = proc
        self.address = address
        self.greeter: Any = greeter
        self.binary = binary
        self.env = env


@pytest.fixture(scope="module")
def cxx_server(venv: pathlib.Path, tmp_path_factory: pytest.TempPathFactory
               ) -> Iterator[CxxServer]:
    missing = _cxx_library_missing()
    if missing:
        pytest.skip(f"the C++ library's example needs {', '.join(missing)} "
                    "(scripts/setup.sh installs them)")
    work = tmp_path_factory.mktemp("cxx_server")
    src = work / "src"
    shutil.copytree(CXX_EXAMPLE, src, ignore=shutil.ignore_patterns("__pycache__", "build"))
    build = work / "build"
    # One build for both the behaviour and "ASan clean": the library is
    # compiled from the wheel's sources with the example's flags.
    flags = "-fsanitize=address,undefined -fno-omit-frame-pointer -g -O1"
    run("cmake", "-S", src, "-B", build, "-DCMAKE_BUILD_TYPE=None",
        f"-DCMAKE_CXX_FLAGS={flags}", f"-DCMAKE_PREFIX_PATH={installed(venv, '--prefix')}",
        timeout=300)
    out = run("cmake", "--build", build, "-j", "2", timeout=600)
    assert not [line for line in out.splitlines() if "warning:" in line], out
    binary = build / "cxx_server"
    # It links the installed shim, not the source tree's.
    assert f"{installed(venv, '--libdir')}/libpygrpc_ffi.so" in run("ldd", binary)

    # The client's message classes for the compiled Greeter.
    stubs = work / "stubs"
    stubs.mkdir()
    run(sys.executable, "-m", "grpc_tools.protoc", f"-I{src}", f"--python_out={stubs}",
        src / "greeter.proto")
    spec = importlib.util.spec_from_file_location("cxx_greeter_pb2", stubs / "greeter_pb2.py")
    assert spec is not None and spec.loader is not None
    greeter = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(greeter)

    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(ASAN_OPTIONS="detect_leaks=0:abort_on_error=1",
               UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1", PYTHONMALLOC="malloc")
    # No --venv: the library embeds the venv the wheel is installed in.
    proc = subprocess.Popen([str(binary), "--listen", "127.0.0.1:0", "--sys-path", str(src),
                             "--module", "chat_handlers"], cwd=work, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stderr is not None
        line = proc.stdout.readline()
        if not line.startswith("listening on "):
            proc.kill()
            pytest.fail(f"the example did not start: {line!r} {proc.communicate()[1]}")
        yield CxxServer(proc, line.split(" ", 2)[2].strip(), greeter, binary, env)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=60)


def test_cxx_library_compiled_method_answers_from_cxx(cxx_server: CxxServer) -> None:
    import grpc

    g = cxx_server.greeter
    with grpc.insecure_channel(cxx_server.address) as channel:
        say_hello = channel.unary_unary(
            "/helloworld.Greeter/SayHello", request_serializer=g.HelloRequest.SerializeToString,
            response_deserializer=g.HelloReply.FromString)
        reply, call = say_hello.with_call(g.HelloRequest(name="ann"), timeout=20)
    assert reply.message == "Hello from C++, ann!"
    assert ("x-served-by", "c++") in tuple(call.initial_metadata())


def test_cxx_library_python_unary_carries_metadata_and_status(cxx_server: CxxServer) -> None:
    import grpc

    with grpc.insecure_channel(cxx_server.address) as channel:
        hello = channel.unary_unary("/cxxdemo.Chat/Hello")
        answer, call = hello.with_call(b"bob", metadata=[("x-caller", "test")], timeout=20)
        with pytest.raises(grpc.RpcError) as refused:
            hello(b"", timeout=20)
    assert answer == b"Hello from Python, bob!"
    assert ("x-served-by", "python") in tuple(call.initial_metadata())
    assert ("x-caller-was", "test") in tuple(call.trailing_metadata())
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert refused.value.details() == "a name is required"


def test_cxx_library_python_streams_of_every_kind(cxx_server: CxxServer) -> None:
    import grpc

    with grpc.insecure_channel(cxx_server.address) as channel:
        counted = list(channel.unary_stream("/cxxdemo.Chat/Count")(b"4", timeout=20))
        total = channel.stream_unary("/cxxdemo.Chat/Sum")(iter([b"1", b"2", b"39"]),
                                                          timeout=20)
        echoed = list(channel.stream_stream("/cxxdemo.Chat/Echo")(iter([b"ab", b"cd"]),
                                                                  timeout=20))
    assert counted == [b"0", b"1", b"2", b"3"]
    assert total == b"42"
    assert echoed == [b"AB", b"CD"]


def test_cxx_library_deadline_ends_a_python_call(cxx_server: CxxServer) -> None:
    import grpc

    with grpc.insecure_channel(cxx_server.address) as channel:
        with pytest.raises(grpc.RpcError) as late:
            channel.unary_unary("/cxxdemo.Chat/Wait")(b"60", timeout=0.5)
        # The server is still serving afterwards.
        answer = channel.unary_unary("/cxxdemo.Chat/Hello")(b"again", timeout=20)
    assert late.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert answer == b"Hello from Python, again!"


def test_cxx_library_methods_without_handler_reach_the_fallback(cxx_server: CxxServer) -> None:
    import grpc

    with grpc.insecure_channel(cxx_server.address) as channel:
        # The server's own generic service takes what Python does not serve...
        echoed = channel.unary_unary("/legacy.Echo/Anything")(b"legacy bytes", timeout=20)
        # ...and answers UNIMPLEMENTED to the rest.
        with pytest.raises(grpc.RpcError) as unknown:
            channel.unary_unary("/nope.Service/Method")(b"", timeout=20)
    assert echoed == b"legacy bytes"
    assert unknown.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_cxx_library_reports_a_failed_python_start_as_an_error(
        cxx_server: CxxServer, tmp_path: pathlib.Path) -> None:
    # pgf::grpc::StartPython throws pgf::grpc::Error; the example prints it
    # and exits 2 (no abort, no sanitizer report).
    result = subprocess.run([str(cxx_server.binary), "--listen", "127.0.0.1:0",
                             "--module", "no_such_handlers_module"], cwd=tmp_path,
                            env=cxx_server.env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    last = result.stderr.splitlines()[-1]
    assert last.startswith("error: cannot start Python: cannot import "
                           "no_such_handlers_module: ModuleNotFoundError"), result.stderr
    assert not [r for r in SANITIZER_REPORTS if r in result.stderr], result.stderr


def test_cxx_library_sigterm_stops_cleanly_without_sanitizer_reports(
        cxx_server: CxxServer) -> None:
    cxx_server.proc.terminate()
    _, err = cxx_server.proc.communicate(timeout=60)
    assert cxx_server.proc.returncode == 0, err
    assert not [r for r in SANITIZER_REPORTS if r in err], err


CXX_LIBRARY_PROBE = """\
#include <pygrpc_ffi/grpc.hpp>
#include <cstdio>
int main() {
  pgf::grpc::PythonService service;  // the pools start; no Python is needed for this
  std::printf("handler: %d\\n", pgf::grpc::PythonService::HasHandler("/x.Y/Z") ? 1 : 0);
  try {
    pgf::grpc::PythonService second;
  } catch (const pgf::grpc::Error& e) {
    std::printf("second: %s\\n", e.what());
  }
  return 0;
}
"""


def test_cxx_library_builds_for_pkg_config_users(venv: pathlib.Path,
                                                 tmp_path: pathlib.Path) -> None:
    missing = _cxx_library_missing()
    if missing:
        pytest.skip(f"the C++ library needs {', '.join(missing)} (scripts/setup.sh installs them)")
    prefix = tmp_path / "prefix"
    pcdir = run(venv / "bin" / "pygrpc-ffi", "build-grpc-library", "--prefix", prefix,
                "--jobs", "2", cwd=tmp_path, timeout=600).strip()
    assert pathlib.Path(pcdir) == prefix / "lib" / "pkgconfig"
    env = dict(os.environ, PKG_CONFIG_PATH=pcdir)
    flags = run("pkg-config", "--cflags", "--libs", "pygrpc_ffi_grpc", env=env).split()
    (tmp_path / "probe.cc").write_text(CXX_LIBRARY_PROBE)
    run("c++", "-std=c++17", "-Wall", "-Wextra", "-Werror", "probe.cc", *flags, "-o", "probe",
        cwd=tmp_path)
    assert run(tmp_path / "probe", cwd=tmp_path).splitlines() == [
        "handler: 0", "second: PythonService: another PythonService is alive in this process"]
    assert f"{installed(venv, '--libdir')}/libpygrpc_ffi.so" in run("ldd", tmp_path / "probe")
