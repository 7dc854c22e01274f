"""haproxy/certbot/renew.sh against a stand-in `certbot` on PATH and a real HAProxy that reloads.

Let's Encrypt is on the internet, so certbot itself is replaced by a script that does what
`certbot renew` does to the files (replace live/<domain>/*.pem, or nothing, or fail). Everything
else is real: openssl, flock, the production HAProxy config in master-worker mode, and its reload.
"""

from __future__ import annotations

import os
import ssl
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import REPO, free_port, require_binary, wait_until
from tests.test_haproxy import AIRFLOW_HOST, FLOWER_HOST, make_certificate, running_haproxy

RENEW = REPO / "haproxy" / "certbot" / "renew.sh"
STAND_IN_CERTBOT = """#!/usr/bin/env bash
# Stand-in for certbot (the real one needs Let's Encrypt): acts on $STANDIN_MODE.
echo "certbot $*" >>"$STANDIN_CALLS"
sleep "${STANDIN_SLEEP:-0}"
case "$STANDIN_MODE" in
  renew) cp "$STANDIN_NEXT"/fullchain.pem "$STANDIN_NEXT"/privkey.pem "$LETSENCRYPT_DIR/live/$STANDIN_DOMAIN/";
         echo "Congratulations, all renewals succeeded";;
  nothing) echo "No renewals were attempted.";;
  fail) echo "Failed to renew certificate $STANDIN_DOMAIN: Connection refused" >&2; exit 1;;
esac
"""


@dataclass
class Setup:
    env: dict[str, str]
    live: Path
    ssl_dir: Path
    reloads: Path
    calls: Path
    https_port: int
    tmp: Path

    def issue(self, name: str) -> Path:
        """A new certificate in the form certbot leaves it (fullchain.pem + privkey.pem)."""
        pem = make_certificate(self.tmp, name, [AIRFLOW_HOST, FLOWER_HOST])
        text = pem.read_text()
        split = text.index("-----BEGIN PRIVATE KEY-----")
        directory = self.tmp / f"issued-{name}"
        directory.mkdir()
        (directory / "fullchain.pem").write_text(text[:split])
        (directory / "privkey.pem").write_text(text[split:])
        pem.unlink()
        return directory

    def renew(self, mode: str, next_cert: Path | None = None, **extra: str) -> subprocess.CompletedProcess[str]:
        env = self.env | {"STANDIN_MODE": mode, "STANDIN_NEXT": str(next_cert or "")} | extra
        return subprocess.run(["bash", str(RENEW)], env=env, capture_output=True, text=True, timeout=120)

    def reload_count(self) -> int:
        return len(self.reloads.read_text().splitlines()) if self.reloads.exists() else 0

    def served_certificate(self) -> bytes:
        return ssl.PEM_cert_to_DER_cert(ssl.get_server_certificate(("127.0.0.1", self.https_port)))


def certificate_der(issued: Path) -> bytes:
    return ssl.PEM_cert_to_DER_cert((issued / "fullchain.pem").read_text())


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[Setup]:
    require_binary("haproxy")
    require_binary("flock")
    bin_dir, letsencrypt, ssl_dir = tmp_path / "bin", tmp_path / "letsencrypt", tmp_path / "haproxy-ssl"
    bin_dir.mkdir()
    (bin_dir / "certbot").write_text(STAND_IN_CERTBOT)
    (bin_dir / "certbot").chmod(0o755)
    live = letsencrypt / "live" / AIRFLOW_HOST
    live.mkdir(parents=True)
    ssl_dir.mkdir()
    env = {
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "LETSENCRYPT_DIR": str(letsencrypt),
        "SSL_DIR": str(ssl_dir),
        "LOCK_FILE": str(tmp_path / "renew.lock"),
        "STANDIN_CALLS": str(tmp_path / "certbot-calls"),
        "STANDIN_DOMAIN": AIRFLOW_HOST,
    }
    partial = Setup(env, live, ssl_dir, tmp_path / "reloads", tmp_path / "certbot-calls", free_port(), tmp_path)
    # The first certificate, installed by a first run (nothing to reload yet: HAProxy is not running).
    first = partial.issue("first")
    for name in ("fullchain.pem", "privkey.pem"):
        (live / name).write_text((first / name).read_text())
    result = partial.renew("nothing", HAPROXY_RELOAD_CMD="true")
    assert result.returncode == 0, result.stdout + result.stderr

    http_port = free_port()
    haproxy_env = {
        "PATH": os.environ["PATH"],
        "HAPROXY_HTTP_BIND": f"127.0.0.1:{http_port}",
        "HAPROXY_HTTPS_BIND": f"127.0.0.1:{partial.https_port}",
        "HAPROXY_SSL_DIR": str(ssl_dir),
        "FLOWER_HOST": FLOWER_HOST,
        "FLOWER_USER": "admin",
        "FLOWER_PASSWORD_HASH": "$6$salt$hash",
        "AIRFLOW_APISERVER_ADDR": "127.0.0.1:1",
        "FLOWER_ADDR": "127.0.0.1:1",
        "CERTBOT_ADDR": "127.0.0.1:1",
    }
    config = REPO / "haproxy" / "haproxy-production.cfg"
    with running_haproxy(config, haproxy_env, [http_port, partial.https_port], tmp_path / "haproxy.log") as proc:
        # the reload production uses is SIGHUP to the master process (docker compose kill -s HUP haproxy)
        partial.env["HAPROXY_RELOAD_CMD"] = f"echo reload >>{partial.reloads} && kill -HUP {proc.pid}"
        assert partial.served_certificate() == certificate_der(first)
        yield partial


def wait_for_certificate(setup: Setup, expected: bytes) -> None:
    wait_until(lambda: setup.served_certificate() == expected, timeout=20)


def test_changed_certificate_is_installed_and_haproxy_reloaded(setup: Setup) -> None:
    second = setup.issue("second")
    result = setup.renew("renew", second)
    assert result.returncode == 0, result.stdout + result.stderr
    pem = (setup.ssl_dir / f"{AIRFLOW_HOST}.pem").read_text()
    assert pem == (second / "fullchain.pem").read_text() + (second / "privkey.pem").read_text()
    assert (setup.ssl_dir / f"{AIRFLOW_HOST}.pem").stat().st_mode & 0o777 == 0o640
    assert setup.reload_count() == 1
    assert setup.calls.read_text().splitlines()[-1] == "certbot renew --http-01-port 8888"
    assert f"{AIRFLOW_HOST}: installed new certificate" in result.stdout
    assert "HAProxy reloaded" in result.stdout
    # the running HAProxy now serves the new certificate, without a restart
    wait_for_certificate(setup, certificate_der(second))
    # nothing but the pem is left in the folder HAProxy loads
    assert sorted(p.name for p in setup.ssl_dir.iterdir()) == [f"{AIRFLOW_HOST}.pem"]


def test_unchanged_certificate_means_no_reload_and_running_twice_is_safe(setup: Setup) -> None:
    pem = setup.ssl_dir / f"{AIRFLOW_HOST}.pem"
    before = pem.stat()
    for _ in range(2):
        result = setup.renew("nothing")
        assert result.returncode == 0, result.stdout + result.stderr
        assert f"{AIRFLOW_HOST}: unchanged" in result.stdout
        assert "no certificate changed; HAProxy not reloaded" in result.stdout
    assert setup.reload_count() == 0
    assert (pem.stat().st_mtime_ns, pem.stat().st_ino) == (before.st_mtime_ns, before.st_ino)


def test_two_runs_at_once_install_and_reload_once(setup: Setup) -> None:
    second = setup.issue("second")
    env = setup.env | {"STANDIN_MODE": "renew", "STANDIN_NEXT": str(second), "STANDIN_SLEEP": "1"}
    runs = [subprocess.Popen(["bash", str(RENEW)], env=env, stdout=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [run.communicate(timeout=120)[0] for run in runs]
    assert [run.returncode for run in runs] == [0, 0]
    assert setup.reload_count() == 1, outputs
    assert sorted("installed new certificate" in out for out in outputs) == [False, True]
    wait_for_certificate(setup, certificate_der(second))


def test_certbot_failure_keeps_the_old_pem_and_fails(setup: Setup) -> None:
    pem = setup.ssl_dir / f"{AIRFLOW_HOST}.pem"
    before = pem.read_bytes()
    result = setup.renew("fail")
    assert result.returncode != 0
    assert "certbot exited with 1" in result.stdout
    assert "left as they were" in result.stdout
    assert pem.read_bytes() == before
    assert setup.reload_count() == 0


def test_mismatched_key_is_refused(setup: Setup) -> None:
    second, third = setup.issue("second"), setup.issue("third")
    (setup.live / "fullchain.pem").write_text((second / "fullchain.pem").read_text())
    (setup.live / "privkey.pem").write_text((third / "privkey.pem").read_text())
    before = (setup.ssl_dir / f"{AIRFLOW_HOST}.pem").read_bytes()
    result = setup.renew("nothing")
    assert result.returncode != 0
    assert "do not match" in result.stdout
    assert (setup.ssl_dir / f"{AIRFLOW_HOST}.pem").read_bytes() == before
    assert setup.reload_count() == 0


def test_a_missing_lineage_is_an_error_that_names_it(setup: Setup) -> None:
    result = setup.renew("nothing", DOMAINS=f"{AIRFLOW_HOST} missing.test")
    assert result.returncode != 0
    assert f"{AIRFLOW_HOST}: unchanged" in result.stdout  # the others are still handled
    assert "missing.test" in result.stdout
    assert "fullchain.pem or privkey.pem is missing" in result.stdout
    assert setup.reload_count() == 0
