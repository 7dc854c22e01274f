"""haproxy/: both configs run by real HAProxy (Debian's) on loopback, with stand-in backends.

The configs take their listen and backend addresses from the environment, with the compose
values as defaults, so these tests run the committed files unchanged.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import os
import ssl
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.conftest import REPO, free_port, require_binary, wait_for_port, wait_until

HAPROXY_DIR = REPO / "haproxy"
AIRFLOW_HOST = "airflow.test"
FLOWER_HOST = "flower.test"
FLOWER_USER = "admin"
FLOWER_PASSWORD = "flower-pw-5b1e"


@dataclass
class StandIn:
    """A backend that answers every path with its name and records what it was sent."""

    name: str
    requests: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None

    def start(self) -> StandIn:
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                stand_in.requests.append((self.path, {k.lower(): v for k, v in self.headers.items()}))
                body = json.dumps({"backend": stand_in.name, "path": self.path}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    @property
    def address(self) -> str:
        assert self.server is not None
        return f"127.0.0.1:{self.server.server_address[1]}"

    def paths(self) -> list[str]:
        return [path for path, _ in self.requests]

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


@pytest.fixture
def backends() -> Iterator[dict[str, StandIn]]:
    stand_ins = {
        "airflow": StandIn("airflow").start(),
        "flower": StandIn("flower").start(),
        "certbot": StandIn("certbot").start(),
    }
    yield stand_ins
    for stand_in in stand_ins.values():
        stand_in.stop()


@contextlib.contextmanager
def running_haproxy(
    config: Path, env: dict[str, str], ports: list[int], log: Path
) -> Iterator[subprocess.Popen[bytes]]:
    """HAProxy in master-worker mode (-W), as the official image runs it, in the foreground."""
    haproxy = require_binary("haproxy")
    check = subprocess.run([haproxy, "-c", "-f", str(config)], env=env, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    with log.open("wb") as out:
        proc = subprocess.Popen([haproxy, "-W", "-db", "-f", str(config)], env=env, stdout=out, stderr=out)
    try:
        for port in ports:
            wait_for_port(port, proc)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def base_env(backends: dict[str, StandIn]) -> dict[str, str]:
    return {
        "PATH": os.environ["PATH"],
        "AIRFLOW_APISERVER_ADDR": backends["airflow"].address,
        "FLOWER_ADDR": backends["flower"].address,
        "CERTBOT_ADDR": backends["certbot"].address,
    }


def get(port: int, path: str = "/", headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path, headers=headers or {})
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


def make_certificate(directory: Path, name: str, hosts: list[str]) -> Path:
    """A self-signed certificate + key for `hosts`, as one HAProxy pem (what renew.sh writes)."""
    key, cert = directory / f"{name}.key.tmp", directory / f"{name}.crt.tmp"
    san = ",".join(f"DNS:{h}" for h in hosts)
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            f"/CN={hosts[0]}",
            "-addext",
            f"subjectAltName={san}",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    pem = directory / f"{name}.pem"
    pem.write_bytes(cert.read_bytes() + key.read_bytes())
    key.unlink()
    cert.unlink()
    return pem


def test_both_configs_pass_haproxy_check(tmp_path: Path, backends: dict[str, StandIn]) -> None:
    haproxy = require_binary("haproxy")
    ssl_dir = tmp_path / "ssl"
    ssl_dir.mkdir()
    make_certificate(ssl_dir, AIRFLOW_HOST, [AIRFLOW_HOST, FLOWER_HOST])
    env = base_env(backends) | {
        "HAPROXY_SSL_DIR": str(ssl_dir),
        "FLOWER_HOST": FLOWER_HOST,
        "FLOWER_USER": FLOWER_USER,
        "FLOWER_PASSWORD_HASH": "$6$abc$def",
    }
    for name in ("haproxy.cfg", "haproxy-production.cfg"):
        result = subprocess.run([haproxy, "-c", "-f", str(HAPROXY_DIR / name)], env=env, capture_output=True, text=True)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "Configuration file is valid" in result.stdout + result.stderr
    # and the check does catch a broken file
    broken = tmp_path / "broken.cfg"
    broken.write_text(
        (HAPROXY_DIR / "haproxy.cfg").read_text().replace("default_backend flower", "default_backend nope")
    )
    assert subprocess.run([haproxy, "-c", "-f", str(broken)], env=env, capture_output=True).returncode != 0


def test_local_config_routes_by_port_without_auth(tmp_path: Path, backends: dict[str, StandIn]) -> None:
    airflow_port, flower_port = free_port(), free_port()
    env = base_env(backends) | {
        "HAPROXY_AIRFLOW_BIND": f"127.0.0.1:{airflow_port}",
        "HAPROXY_FLOWER_BIND": f"127.0.0.1:{flower_port}",
    }
    with running_haproxy(HAPROXY_DIR / "haproxy.cfg", env, [airflow_port, flower_port], tmp_path / "haproxy.log"):
        status, _, body = get(airflow_port, "/dags")
        assert (status, json.loads(body)["backend"]) == (200, "airflow")
        status, _, body = get(flower_port, "/workers")
        assert (status, json.loads(body)["backend"]) == (200, "flower")
        assert backends["airflow"].requests[-1][1]["x-forwarded-for"] == "127.0.0.1"
        # HAProxy health-checks each backend on its real health endpoint
        wait_until(lambda: "/api/v2/monitor/health" in backends["airflow"].paths())
        wait_until(lambda: "/healthcheck" in backends["flower"].paths())


@pytest.fixture
def production(tmp_path: Path, backends: dict[str, StandIn]) -> Iterator[dict[str, int]]:
    """The production config on loopback with a self-signed certificate for both host names."""
    ssl_dir = tmp_path / "ssl"
    ssl_dir.mkdir()
    make_certificate(ssl_dir, AIRFLOW_HOST, [AIRFLOW_HOST, FLOWER_HOST])
    password_hash = subprocess.run(
        ["openssl", "passwd", "-6", FLOWER_PASSWORD], check=True, capture_output=True, text=True
    ).stdout.strip()
    ports = {"http": free_port(), "https": free_port()}
    env = base_env(backends) | {
        "HAPROXY_HTTP_BIND": f"127.0.0.1:{ports['http']}",
        "HAPROXY_HTTPS_BIND": f"127.0.0.1:{ports['https']}",
        "HAPROXY_SSL_DIR": str(ssl_dir),
        "FLOWER_HOST": FLOWER_HOST,
        "FLOWER_USER": FLOWER_USER,
        "FLOWER_PASSWORD_HASH": password_hash,
    }
    assert FLOWER_PASSWORD not in (HAPROXY_DIR / "haproxy-production.cfg").read_text()
    with running_haproxy(HAPROXY_DIR / "haproxy-production.cfg", env, list(ports.values()), tmp_path / "haproxy.log"):
        yield ports


def https_get(
    port: int, host: str, path: str = "/", headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=10)
    try:
        conn.putrequest("GET", path, skip_host=True)
        conn.putheader("Host", host)
        for key, value in (headers or {}).items():
            conn.putheader(key, value)
        conn.endheaders()
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def test_production_redirects_http_to_https_except_acme(
    production: dict[str, int], backends: dict[str, StandIn]
) -> None:
    status, headers, _ = get(production["http"], "/dags?x=1", {"Host": AIRFLOW_HOST})
    assert status == 301
    assert headers["location"] == f"https://{AIRFLOW_HOST}/dags?x=1"
    status, _, body = get(production["http"], "/.well-known/acme-challenge/tok3n", {"Host": AIRFLOW_HOST})
    assert (status, json.loads(body)) == (200, {"backend": "certbot", "path": "/.well-known/acme-challenge/tok3n"})
    assert backends["airflow"].paths() == [] or all("health" in p for p in backends["airflow"].paths())


def assert_browser_protections(headers: dict[str, str]) -> None:
    """What haproxy-production.cfg adds to every HTTPS answer, and the banner it removes."""
    assert headers["strict-transport-security"] == "max-age=63072000; includeSubDomains"
    # same-origin framing stays allowed: the UI shows plugin pages (DAG Repositories) in an iframe
    assert headers["x-frame-options"] == "SAMEORIGIN"
    assert headers["content-security-policy"] == "frame-ancestors 'self'"
    assert headers["x-content-type-options"] == "nosniff"
    assert "server" not in headers


def test_production_routes_by_host_with_browser_protections(
    production: dict[str, int], backends: dict[str, StandIn]
) -> None:
    # the stand-in announces itself (Python's `Server: BaseHTTP/...`), as Airflow's uvicorn does
    direct = http.client.HTTPConnection(*backends["airflow"].address.split(":"), timeout=10)
    direct.request("GET", "/home")
    assert direct.getresponse().getheader("Server")
    direct.close()
    for host in (AIRFLOW_HOST, "unknown.test", f"{AIRFLOW_HOST}:443"):
        status, headers, body = https_get(production["https"], host, "/home")
        assert (status, json.loads(body)["backend"]) == (200, "airflow"), host
        assert_browser_protections(headers)
    seen = backends["airflow"].requests[-1][1]
    assert seen["x-forwarded-proto"] == "https"
    wait_until(lambda: "/api/v2/monitor/health" in backends["airflow"].paths())
    wait_until(lambda: "/healthcheck" in backends["flower"].paths())


def test_production_flower_needs_the_admin_login(production: dict[str, int], backends: dict[str, StandIn]) -> None:
    status, headers, _ = https_get(production["https"], FLOWER_HOST, "/workers")
    assert status == 401
    assert 'realm="Flower"' in headers["www-authenticate"]
    assert_browser_protections(headers)  # HAProxy's own answers carry them too
    assert https_get(production["https"], FLOWER_HOST, "/", basic(FLOWER_USER, "wrong"))[0] == 401
    assert https_get(production["https"], FLOWER_HOST, "/", basic("someone", FLOWER_PASSWORD))[0] == 401
    flower_requests_before = len([p for p in backends["flower"].paths() if p != "/healthcheck"])
    assert flower_requests_before == 0, "an unauthenticated request reached Flower"

    status, headers, body = https_get(
        production["https"], FLOWER_HOST.upper() + ":443", "/workers", basic(FLOWER_USER, FLOWER_PASSWORD)
    )
    assert (status, json.loads(body)) == (200, {"backend": "flower", "path": "/workers"})
    assert_browser_protections(headers)
    # the credentials stop at HAProxy
    assert "authorization" not in backends["flower"].requests[-1][1]


def s_client(port: int, *options: str) -> subprocess.CompletedProcess[str]:
    # SECLEVEL=0 lets this client offer TLS 1.0/1.1 at all (Debian's default refuses them client-side),
    # so a refusal below comes from the server.
    return subprocess.run(
        ["openssl", "s_client", "-brief", "-connect", f"127.0.0.1:{port}", "-servername", AIRFLOW_HOST, *options],
        input="",
        capture_output=True,
        text=True,
        timeout=20,
    )


def negotiated(result: subprocess.CompletedProcess[str]) -> str | None:
    """The protocol version of a completed handshake (s_client -brief), else None."""
    for line in (result.stdout + result.stderr).splitlines():
        if line.startswith("Protocol version:"):
            return line.split(":", 1)[1].strip()
    return None


def test_production_tls_versions(production: dict[str, int], tmp_path: Path) -> None:
    require_binary("openssl")
    assert negotiated(s_client(production["https"], "-tls1_3")) == "TLSv1.3"
    assert negotiated(s_client(production["https"], "-tls1_2")) == "TLSv1.2"
    for old in ("-tls1_1", "-tls1"):
        result = s_client(production["https"], old, "-cipher", "DEFAULT@SECLEVEL=0")
        assert result.returncode != 0, result.stdout
        assert negotiated(result) is None
    # a TLS 1.2 cipher without forward secrecy is refused too
    assert negotiated(s_client(production["https"], "-tls1_2", "-cipher", "AES128-SHA")) is None
    assert negotiated(s_client(production["https"], "-tls1_2", "-cipher", "ECDHE-RSA-AES128-GCM-SHA256")) == "TLSv1.2"

    # control: the same TLS 1.1 client does connect to a server that allows TLS 1.1
    pem = make_certificate(tmp_path, "control", ["control.test"])
    port = free_port()
    server = subprocess.Popen(  # stdin stays open: s_server drops its connection when stdin ends
        [
            "openssl",
            "s_server",
            "-accept",
            f"127.0.0.1:{port}",
            "-cert",
            str(pem),
            "-key",
            str(pem),
            "-tls1_1",
            "-cipher",
            "DEFAULT@SECLEVEL=0",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port, server)
        assert negotiated(s_client(port, "-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0")) == "TLSv1.1"
    finally:
        server.kill()
        server.wait()


@pytest.mark.parametrize(
    "path",
    ["/.well-known/acme-challenge/../../admin", "/.well-known/acme-challenge/", "/.well-known/acme-challenge/a/b",
     "/.well-known/acme-challenge/..%2f..%2fadmin"],
)  # fmt: skip
def test_only_an_acme_token_path_reaches_certbot(
    production: dict[str, int], backends: dict[str, StandIn], path: str
) -> None:
    """Issue 30, finding 8: the prefix match let any path under the challenge folder through, for any Host."""
    before = len(backends["certbot"].requests)
    status, headers, _ = get(production["http"], path, {"Host": "anything.example"})
    assert status == 301 and headers["location"].startswith("https://anything.example/"), (status, headers)
    assert len(backends["certbot"].requests) == before


def test_a_clients_x_forwarded_for_never_reaches_a_backend(
    production: dict[str, int], backends: dict[str, StandIn]
) -> None:
    """Backends (Airflow's logs, Flower) see the address HAProxy saw, not one the client wrote."""
    status, _, _ = https_get(production["https"], AIRFLOW_HOST, "/home", {"X-Forwarded-For": "203.0.113.66"})
    assert status == 200
    seen = backends["airflow"].requests[-1][1]
    assert seen["x-forwarded-for"] == "127.0.0.1"
    status, _, _ = get(production["http"], "/.well-known/acme-challenge/tok3n", {"X-Forwarded-For": "203.0.113.66"})
    assert status == 200 and backends["certbot"].requests[-1][1]["x-forwarded-for"] == "127.0.0.1"
