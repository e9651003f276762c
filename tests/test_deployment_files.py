"""The deployment examples of docs/deployment.md (deploy/): each file parses,
every pygrpc-ffi command line in them is one the CLI's own parser takes,
and the relations the page states hold (ports, grace periods, TLS paths).
What the flags do is proved end to end by tests/e2e/test_serve_tls.py,
test_serve_health.py and test_probe.py."""

from __future__ import annotations

import argparse
import json
import pathlib
import re
from typing import Any

import yaml  # type: ignore[import-untyped]

from pygrpc_ffi import probe
from pygrpc_ffi.cli import build_parser

DEPLOY = pathlib.Path(__file__).resolve().parent.parent / "deploy"


def cli(*argv: str) -> argparse.Namespace:
    """argv as the CLI parses it (``probe`` has a parser of its own); an
    unknown flag or bad value fails here."""
    parser = probe.build_parser() if argv[0] == "probe" else build_parser()
    try:
        return parser.parse_args(list(argv[1:] if argv[0] == "probe" else argv))
    except SystemExit as exc:
        raise AssertionError(f"pygrpc-ffi refuses {' '.join(argv)}") from exc


def port_of(address: str) -> int:
    return int(address.rpartition(":")[2])


def kubernetes() -> list[dict[str, Any]]:
    return list(yaml.safe_load_all((DEPLOY / "kubernetes.yaml").read_text()))


def test_the_kubernetes_manifest_serves_probes_and_drains_as_the_page_says() -> None:
    deployment, service, certificate = kubernetes()
    assert [deployment["kind"], service["kind"], certificate["kind"]] == [
        "Deployment", "Service", "Certificate"]
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    args = cli("serve", *container["args"])
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert port_of(args.listen) == ports["grpc"]
    assert args.metrics_port == ports["metrics"]
    assert args.health
    # The kubelet's SIGKILL must not cut the drain or the calls in flight.
    assert args.drain_seconds + args.grace < pod["terminationGracePeriodSeconds"]
    (mount,) = container["volumeMounts"]
    assert (args.tls_cert.startswith(mount["mountPath"] + "/")
            and args.tls_key.startswith(mount["mountPath"] + "/"))
    assert pod["volumes"][0]["secret"]["secretName"] == certificate["spec"]["secretName"]
    for kind in ("readinessProbe", "livenessProbe"):
        command = container[kind]["exec"]["command"]
        assert command[0].endswith("/pygrpc-ffi")
        assert command[1] == "probe"
        probed = cli(*command[1:])
        assert port_of(probed.address) == ports["grpc"]
        assert probed.tls_ca.startswith(mount["mountPath"] + "/")
        # The probe waits --timeout to connect, then as long for the call;
        # Python takes about a second to start.
        assert container[kind]["timeoutSeconds"] > 2 * probed.timeout + 1
    # Headless, so that DNS lists every ready pod for round_robin.
    assert service["spec"]["clusterIP"] == "None"
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    assert service["spec"]["ports"][0]["targetPort"] == "grpc"


def dockerfile_command() -> list[str]:
    text = (DEPLOY / "Dockerfile").read_text().replace("\\\n", " ")
    entrypoint = json.loads(re.search(r"^ENTRYPOINT (\[.*\])$", text, re.M).group(1))  # type: ignore[union-attr]
    command = json.loads(re.search(r"^CMD (\[.*\])$", text, re.M).group(1))  # type: ignore[union-attr]
    return [*entrypoint, *command]


def test_the_dockerfile_serves_with_a_command_the_cli_takes() -> None:
    binary, *argv = dockerfile_command()
    assert binary == "/opt/venv/bin/pygrpc-ffi"
    args = cli(*argv)
    assert args.health and args.drain_seconds > 0
    text = (DEPLOY / "Dockerfile").read_text()
    exposed = {int(p) for line in re.findall(r"^EXPOSE (.*)$", text, re.M) for p in line.split()}
    assert {port_of(args.listen), args.metrics_port} <= exposed
    # The runtime stage carries the libraries the host was built against.
    runtime = text.split("FROM debian:12-slim", 1)[1]
    for library in ("libnghttp2-14", "libssl3", "libpython3.11"):
        assert library in runtime


def test_envoy_sends_http2_and_health_checks_to_the_grpc_port() -> None:
    config = yaml.safe_load((DEPLOY / "envoy.yaml").read_text())
    (cluster,) = config["static_resources"]["clusters"]
    options = cluster["typed_extension_protocol_options"][
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]
    assert "http2_protocol_options" in options["explicit_http_config"]
    assert cluster["health_checks"][0]["grpc_health_check"] == {"service_name": ""}
    endpoint = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]
    deployment = kubernetes()[0]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    grpc_port = {p["name"]: p["containerPort"] for p in container["ports"]}["grpc"]
    assert endpoint["address"]["socket_address"]["port_value"] == grpc_port
