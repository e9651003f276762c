"""The Python suite under every supported interpreter, against the wheel.

    nox                              every interpreter, the suite without e2e
    nox -s tests-3.10 tests-3.13 -- -x      (what scripts/test.sh runs)
    nox -s tests-3.12 -- tests/e2e   pytest arguments after --

Each session builds the wheel with its own interpreter, installs it into the
session's fresh venv (the source tree is never imported: pytest runs from
the venv's script), runs the smoke test, builds tests/c/test_embed_host.c
against the installed package (``pygrpc_ffi config``) and runs it, which
starts that interpreter embedded through ``pgf_python_start``, then runs
pytest (by default everything but tests/e2e and tests/test_packaging.py).
"""

from __future__ import annotations

import pathlib
import shutil
import subprocess
import tempfile

import nox

ROOT = pathlib.Path(__file__).resolve().parent
PYTHONS = ["3.10", "3.11", "3.12", "3.13"]
TEST_DEPS = ["grpcio>=1.80", "grpcio-status>=1.80", "grpcio-health-checking>=1.80",
             "grpcio-reflection>=1.80", "protobuf>=5", "hypothesis>=6", "pytest>=8",
             "pytest-timeout", "prometheus_client>=0.17", "opentelemetry-api>=1.20",
             "opentelemetry-sdk>=1.20", "opentelemetry-instrumentation-grpc",
             "grpc-interceptor>=0.15", "pyyaml"]

nox.options.sessions = ["tests"]


@nox.session(python=PYTHONS)
def tests(session: nox.Session) -> None:
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="pgf-nox-"))
    try:
        _run(session, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _run(session: nox.Session, tmp: pathlib.Path) -> None:
    session.install("setuptools>=68", "wheel", "cffi>=1.17", "build")
    # Built from a copy of the tracked sources: the interpreters never share
    # a build directory, and the source tree stays as it is.
    src = tmp / "src"
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                           cwd=ROOT, check=True, capture_output=True, text=True).stdout
    for name in filter(None, files.split("\0")):
        if (ROOT / name).is_file():
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, src / name)
    session.run("python", "-m", "build", "--no-isolation", "--wheel", "--outdir",
                str(tmp / "dist"), str(src), silent=True)
    (wheel,) = (tmp / "dist").glob("*.whl")
    session.install(str(wheel), *TEST_DEPS)

    session.chdir(tmp)
    session.run("python", str(ROOT / "tests" / "packaging_smoke.py"), str(ROOT))

    # A C host embedding this interpreter, built against the installed package.
    flags = session.run("python", "-m", "pygrpc_ffi", "config", "--cflags", "--libs",
                        silent=True)
    assert isinstance(flags, str)
    host = tmp / "test_embed_host"
    session.run("cc", "-std=c99", "-O1", "-g", "-pthread",
                str(ROOT / "tests" / "c" / "test_embed_host.c"), f"-I{ROOT / 'tests' / 'c'}",
                *flags.split(), "-o", str(host), external=True)
    venv = session.virtualenv.location
    session.run(str(host), venv, str(ROOT / "tests" / "c"), external=True,
                env={"PYTHONUNBUFFERED": "1", "PYTHONDONTWRITEBYTECODE": "1"})

    session.chdir(ROOT)
    if not list((ROOT / "tests" / "protos").glob("*_pb2.py")):
        session.install("grpcio-tools>=1.80")
        protos = [f"tests/protos/{p.name}" for p in (ROOT / "tests" / "protos").glob("*.proto")]
        session.run("python", "-m", "grpc_tools.protoc", "-Itests/protos",
                    "--python_out=tests/protos", "--grpc_python_out=tests/protos",
                    "--pyi_out=tests/protos", *protos)
    # Test paths are relative to the repository; pytest runs from the scratch
    # directory, with its own script (not `python -m pytest`), so neither it
    # nor the `python -c` children of tests find the source tree's package:
    # everything imports the installed wheel.
    args = [str(ROOT / a) if not a.startswith("-") and (ROOT / a).exists() else a
            for a in session.posargs]
    if not any(not a.startswith("-") for a in args):  # no test paths given
        args += [str(ROOT / "tests"), f"--ignore={ROOT / 'tests' / 'e2e'}",
                 f"--ignore={ROOT / 'tests' / 'test_packaging.py'}"]
    session.chdir(tmp)
    session.run("pytest", "-q", "-p", "no:cacheprovider", f"--rootdir={ROOT}", *args)
