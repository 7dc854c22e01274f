"""docker-compose-production.yaml over docker-compose.yaml, as containers: HAProxy with TLS in front.

The production override as it is, with a self-signed certificate, loopback and unprivileged ports
(PUBLIC_BIND, HTTP_PORT, HTTPS_PORT), the dev vault standing in for 1Password Connect, and one
engine-specific override: Podman 4 has no `host-gateway`, so certbot's backend address is this host's
(tests/containers.host_gateway_override). certbot itself needs the internet (Let's Encrypt); a local
HTTP server on certbot's port plays its standalone server.
"""

from __future__ import annotations

import http.server
import json
import ssl
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import free_port, require_binary
from tests.container_engine import Engine
from tests.containers import ADMIN, LONG_RUNNING, ContainerStack, host_address, new_production_stack, running
from tests.test_containers import ADMIN_PASSWORD, api, run_dag, stack_settings, sweep
from tests.test_haproxy import negotiated, s_client

#: The first test of the module also waits for the images and the stack (about 4 minutes on 2 cores).
pytestmark = pytest.mark.timeout(1500)

CERTBOT_PORT = 8888  # haproxy-production.cfg's certbot backend, and renew.sh's --http-01-port


class _Certbot(http.server.BaseHTTPRequestHandler):
    """certbot's standalone HTTP-01 server, as far as HAProxy can tell: answers the challenge path."""

    def do_GET(self) -> None:
        body = f"certbot stand-in: {self.path}".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def certbot() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer((host_address(), CERTBOT_PORT), _Certbot)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"{host_address()}:{CERTBOT_PORT}"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def production_stack(
    tmp_path_factory: pytest.TempPathFactory, container_engine: Engine, certbot: str
) -> Iterator[ContainerStack]:
    require_binary("openssl")
    tmp = tmp_path_factory.mktemp("containers_production")
    (tmp / "project").mkdir()
    local = stack_settings(tmp, container_engine)
    ports = {name: str(free_port()) for name in ("HTTP_PORT", "HTTPS_PORT", "POSTGRES_PORT", "REDIS_PORT")}
    stack = new_production_stack(container_engine, tmp, local, ports, "dts-tests-production")
    with running(stack):
        yield stack
        print("production stack timings: " + "; ".join(stack.log))
        sweep(stack, tmp / "project" / "logs", runs=1)


def curl(stack: ContainerStack, host: str, path: str, *options: str, scheme: str = "https") -> tuple[int, str, str]:
    """(status, headers, body) of a request to `host` through the stack's HAProxy on loopback (SNI and Host set)."""
    port = stack.settings["HTTPS_PORT" if scheme == "https" else "HTTP_PORT"]
    pem = Path(stack.settings["SSL_DIR"]) / "localhost.pem"
    reach = ["--resolve", f"{host}:{port}:127.0.0.1", "--cacert", str(pem)]
    result = subprocess.run(
        ["curl", "-sS", "-D", "-", "--max-time", "30", *reach, *options, f"{scheme}://{host}:{port}{path}"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    head, _, body = result.stdout.replace("\r\n", "\n").partition("\n\n")
    return int(head.split()[1]), head.lower(), body


def test_every_service_is_healthy_with_production_settings(production_stack: ContainerStack) -> None:
    services = production_stack.services()
    assert all(services[name]["State"] == "running" for name in LONG_RUNNING), services
    init = production_stack.logs("airflow-init")
    assert "ENVIRONMENT=production" in init
    assert "production settings checked (Fernet key, admin password, database password)" in init


def test_tls_1_2_and_1_3_only_with_the_certificate(production_stack: ContainerStack) -> None:
    port = int(production_stack.settings["HTTPS_PORT"])
    assert negotiated(s_client(port, "-tls1_3")) == "TLSv1.3"
    assert negotiated(s_client(port, "-tls1_2")) == "TLSv1.2"
    for old in ("-tls1_1", "-tls1"):
        assert negotiated(s_client(port, old, "-cipher", "DEFAULT@SECLEVEL=0")) is None


def test_host_routing_sends_the_ui_host_to_airflow(production_stack: ContainerStack) -> None:
    host = production_stack.settings["AIRFLOW_HOST"]
    status, headers, body = curl(production_stack, host, "/api/v2/monitor/health")
    assert status == 200 and json.loads(body)["metadatabase"]["status"] == "healthy"
    assert "strict-transport-security: max-age=63072000; includesubdomains" in headers
    login = json.dumps({"username": ADMIN, "password": ADMIN_PASSWORD})
    status, _, body = curl(
        production_stack, host, "/auth/token", "-X", "POST", "-H", "Content-Type: application/json", "-d", login
    )
    assert status in (200, 201) and "access_token" in json.loads(body)


def test_flower_host_refuses_anonymous_requests_and_takes_the_admin_login(production_stack: ContainerStack) -> None:
    host = production_stack.settings["FLOWER_HOST"]
    status, headers, _ = curl(production_stack, host, "/workers")
    assert status == 401 and 'www-authenticate: basic realm="flower"' in headers
    assert curl(production_stack, host, "/workers", "-u", f"{ADMIN}:not-the-password")[0] == 401
    status, _, body = curl(production_stack, host, "/workers", "-u", f"{ADMIN}:{ADMIN_PASSWORD}")
    worker_host = production_stack.exec("airflow-worker", "hostname").stdout.strip()
    assert status == 200 and f"celery@{worker_host}" in body


def test_http_redirects_to_https(production_stack: ContainerStack) -> None:
    host = production_stack.settings["AIRFLOW_HOST"]
    status, headers, _ = curl(production_stack, host, "/home?x=1", scheme="http")
    assert status == 301
    assert f"location: https://{host}:{production_stack.settings['HTTP_PORT']}/home?x=1" in headers


def test_acme_challenges_reach_certbots_backend(production_stack: ContainerStack, certbot: str) -> None:
    host = production_stack.settings["AIRFLOW_HOST"]
    status, _, body = curl(production_stack, host, "/.well-known/acme-challenge/token-123", scheme="http")
    assert (status, body) == (200, "certbot stand-in: /.well-known/acme-challenge/token-123")


def test_a_secret_docker_task_runs_behind_tls(production_stack: ContainerStack) -> None:
    """The REST API through HAProxy's TLS: an example runs on the worker with the production settings."""
    port = production_stack.settings["HTTPS_PORT"]
    trusted = ssl.create_default_context(cafile=Path(production_stack.settings["SSL_DIR"]) / "localhost.pem")
    trusted.check_hostname = False  # 127.0.0.1 is not a name in the certificate; HAProxy sends it to Airflow
    client = api(production_stack, url=f"https://127.0.0.1:{port}", verify=trusted)
    assert run_dag(client, "example_secret_docker")[1] == "success"
