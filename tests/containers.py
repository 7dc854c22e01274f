"""The compose stack as real containers: docker/docker-compose.yaml on a private Podman engine.

The stand-ins of the registry images (tests/standin_images.py) and the project's own
docker/Dockerfile are built on the engine first, then Docker Compose v2 (the pinned binary in
.venv/bin) brings the stack up exactly as the team does, from docker/ with an env file of its own
(a developer's docker/.env is never read or written). Compose talks to Podman's Docker API the way
it talks to Docker's, with two differences it needs to be told about:

* ``DOCKER_BUILDKIT=0 COMPOSE_BAKE=false``: Podman's API has no BuildKit, and Bake would pull
  moby/buildkit; the classic builder API builds docker/Dockerfile as it is.
* Podman reports a network's name where Docker reports its id, so compose takes every running
  container for out of date: a second ``up`` must be ``up --no-recreate``, a ``run`` ``run --no-deps``,
  and a restart ``stop``/``start``.

Used by ``scripts/containers up|down|status`` (``python -m tests.containers``) and by the tests in
tests/test_containers*.py.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from cryptography.fernet import Fernet

from tests.container_engine import Engine, default_state_dir, private_dir
from tests.standin_images import build_all

REPO = Path(__file__).parent.parent
ADMIN = "admin"
#: The group the haproxy image runs in (renew.sh's SSL_GID).
HAPROXY_GID = 99
COMPOSE_FILE = "docker-compose.yaml"
PRODUCTION_FILE = "docker-compose-production.yaml"
#: The services `up` starts with the dev-vault profile; airflow-init runs once and exits.
LONG_RUNNING = (
    "postgres",
    "redis",
    "dev-vault",
    "airflow-apiserver",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-triggerer",
    "airflow-worker",
    "flower",
    "haproxy",
)


def compose_binary() -> Path:
    binary = Path(sys.executable).with_name("docker-compose")
    if not binary.exists():
        raise SystemExit("docker-compose is not in .venv/bin: run scripts/bootstrap (x86_64 only)")
    return binary


@dataclass
class ContainerStack:
    """One compose project (docker/ of `checkout`) on `engine`, with settings `settings`."""

    engine: Engine
    checkout: Path
    settings: dict[str, str]
    env_file: Path
    project: str = "airflow"
    production: bool = False
    profiles: tuple[str, ...] = ("dev-vault",)
    #: Compose files of the engine's own after ours (see `host_gateway_override`).
    extra_files: tuple[Path, ...] = ()
    #: Settings given in the environment rather than the env file (they win over it, as in compose).
    environment: dict[str, str] = field(default_factory=dict)
    #: Whether `up` writes `settings` into `env_file` (False: the file is the caller's, as a team's .env).
    writes_env_file: bool = True
    log: list[str] = field(default_factory=list)

    @property
    def docker_dir(self) -> Path:
        return self.checkout / "docker"

    @property
    def bin_dir(self) -> Path:
        return self.engine.state / "bin"

    def shell_env(self) -> dict[str, str]:
        """The environment in which README's `docker compose ...` lines run, verbatim, against this stack."""
        shim = self.bin_dir / "docker"
        # Only `docker compose` is needed; it is the pinned Compose v2 binary whatever docker CLI is here.
        script = (
            "#!/bin/sh\n"
            f'[ "$1" = compose ] && {{ shift; exec "{compose_binary()}" "$@"; }}\n'
            'echo "only docker compose is available here (tests/containers.py)" >&2\nexit 2\n'
        )
        if not shim.exists() or shim.read_text() != script:  # written once, not on every command
            self.bin_dir.mkdir(exist_ok=True)
            shim.write_text(script)
            shim.chmod(0o755)
        files = [COMPOSE_FILE, *([PRODUCTION_FILE] if self.production else []), *map(str, self.extra_files)]
        return {
            "PATH": f"{self.bin_dir}:/usr/local/bin:/usr/bin:/bin",
            "HOME": str(self.engine.state),
            "LANG": "C.UTF-8",
            "DOCKER_CONFIG": str(self.engine.state / "docker-config"),
            **self.engine.env,
            "COMPOSE_PROJECT_NAME": self.project,
            "COMPOSE_ENV_FILES": str(self.env_file),
            "COMPOSE_FILE": os.pathsep.join(files),
            "COMPOSE_PROFILES": ",".join(self.profiles),
            "DOCKER_BUILDKIT": "0",
            "COMPOSE_BAKE": "false",
            **self.environment,
        }

    def write_settings(self) -> None:
        if not self.writes_env_file:
            return
        self.env_file.write_text("".join(f"{key}='{value}'\n" for key, value in self.settings.items()))
        self.env_file.chmod(0o600)

    def compose(self, *args: str, check: bool = True, timeout: float = 900) -> subprocess.CompletedProcess[str]:
        """``docker compose ARGS`` in docker/, output captured."""
        return self._run([str(compose_binary()), *args], f"docker compose {' '.join(args)}", check, timeout)

    def sh(self, command: str, *, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        """A README command line, verbatim, in docker/ (bash -c)."""
        return self._run(["bash", "-o", "pipefail", "-c", command], repr(command), check, timeout)

    def _run(self, argv: list[str], what: str, check: bool, timeout: float) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            argv, cwd=self.docker_dir, env=self.shell_env(), capture_output=True, text=True, timeout=timeout
        )
        if check and result.returncode != 0:
            raise AssertionError(f"{what} exited {result.returncode}:\n{result.stderr[-6000:]}")
        return result

    def build(self) -> None:
        """Stand-ins (if missing or changed), then docker/Dockerfile through compose's build section."""
        self.write_settings()
        timed(self.log, "stand-in images", lambda: build_all(self.engine))
        timed(self.log, "docker/Dockerfile", lambda: self.compose("build", "airflow-init", timeout=1800))

    def up(self) -> None:
        """`up -d` and wait until every long-running service is healthy (or running, for those without a check).

        If that fails, the error ends with the console of each service that is not running or not healthy.
        """
        self.write_settings()
        try:
            timed(
                self.log,
                "up to healthy",
                lambda: self.compose("up", "-d", "--no-recreate", "--wait", "--wait-timeout", "900", timeout=1000),
            )
        except AssertionError as failed:
            unwell = [
                name
                for name, row in self.services().items()
                if row.get("Health") not in ("", "healthy") or row.get("ExitCode") not in (0, None)
            ]
            consoles = "".join(
                f"\n--- {name} ---\n{self.logs(name)[-3000:]}\n--- {name}: health checks ---\n{self.health_log(name)}"
                for name in unwell
            )
            raise AssertionError(f"{failed}\n{consoles}") from None

    def down(self) -> None:
        """Remove the containers, networks and volumes of this project (every profile's)."""
        self.compose(
            "--profile", "*", "down", "--volumes", "--remove-orphans", "--timeout", "20", check=False, timeout=300
        )

    def services(self) -> dict[str, dict[str, str]]:
        """``{service: {"State": ..., "Health": ..., "Name": ...}}`` from `compose ps --all`."""
        out = self.compose("ps", "--all", "--format", "json").stdout
        rows = [json.loads(line) for line in out.splitlines() if line.strip()]
        return {row["Service"]: row for row in rows}

    def config(self) -> dict[str, Any]:
        """The project as compose resolves it (``compose config``)."""
        result: dict[str, Any] = json.loads(self.compose("config", "--format", "json").stdout)
        return result

    def health_log(self, service: str) -> str:
        """The outputs of the service's last health checks, as the engine recorded them."""
        inspected = self.engine.podman("inspect", "--format", "json", self.container(service), check=False)
        with contextlib.suppress(ValueError, IndexError, KeyError):
            health = json.loads(inspected.stdout)[0]["State"]["Health"]
            return "\n".join(f"exit {entry['ExitCode']}: {entry['Output'][-500:]}" for entry in health["Log"])
        return "(none recorded)"

    def container(self, service: str) -> str:
        return self.services()[service]["Name"]

    def logs(self, *services: str) -> str:
        return self.compose("logs", "--no-color", "--no-log-prefix", *services, check=False).stdout

    def exec(
        self, service: str, *command: str, check: bool = True, timeout: float = 300
    ) -> subprocess.CompletedProcess[str]:
        return self.compose("exec", "-T", service, *command, check=check, timeout=timeout)


def timed(log: list[str], what: str, step: object) -> None:
    started = time.monotonic()
    step()  # type: ignore[operator]
    line = f"{what}: {time.monotonic() - started:.0f} s"
    log.append(line)
    print(f"==> {line}", flush=True)


def wait_for(url: str, timeout: float = 120, **kwargs: object) -> httpx.Response:
    """GET `url` until it answers 200 (HAProxy may still be marking its backend up)."""
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(httpx.HTTPError):
            response = httpx.get(url, timeout=5, **kwargs)  # type: ignore[arg-type]
            if response.status_code == 200 or time.monotonic() > deadline:
                return response
        if time.monotonic() > deadline:
            raise AssertionError(f"{url} did not answer in {timeout} s")
        time.sleep(1)


# -- scripts/containers -----------------------------------------------------------------------------


def _kept(state: Path, name: str, make: Callable[[], str]) -> str:
    """A generated setting kept in the private folder, so every `up` uses the same one."""
    path = state / "secrets" / name
    if not path.exists():
        path.parent.mkdir(mode=0o700, exist_ok=True)
        path.write_text(make())
        path.chmod(0o600)
    return path.read_text().strip()


def local_settings(project_dir: Path, engine: Engine, admin_password: str, ports: tuple[str, str]) -> dict[str, str]:
    """A local stack's settings: dev vault, example DAGs, the UI and Flower on loopback at `ports`."""
    airflow_port, flower_port = ports
    return {
        "ENVIRONMENT": "development",
        "AIRFLOW_UID": "50000",
        "AIRFLOW_PROJ_DIR": str(project_dir),
        "AIRFLOW_DAGS_DIR": str(REPO / "example_dags"),
        "_AIRFLOW_WWW_USER_USERNAME": ADMIN,
        "_AIRFLOW_WWW_USER_PASSWORD": admin_password,
        "AIRFLOW_PORT": airflow_port,
        "FLOWER_PORT": flower_port,
        "LOCAL_BIND": "127.0.0.1",
        "_AIRFLOW__WEBSERVER__BASE_URL": f"http://127.0.0.1:{airflow_port}",
        "DOCKER_SOCKET": str(engine.socket),
        "DOCKER_GID": "0",
    }


def production_settings(
    state: Path, local: dict[str, str], certificates: Path, ports: dict[str, str]
) -> dict[str, str]:
    """docker-compose-production.yaml's required settings, generated, on loopback and `ports` (unprivileged)."""
    from tests.test_haproxy import make_certificate

    https_port = ports["HTTPS_PORT"]
    airflow_host, flower_host = "airflow.localhost", "flower.airflow.localhost"
    if not (certificates / "localhost.pem").exists():
        certificates.mkdir(exist_ok=True)
        pem = make_certificate(certificates, "localhost", [airflow_host, flower_host])
        # As haproxy/certbot/renew.sh installs them: readable by the haproxy image's group (99) only.
        for path, mode in ((certificates, 0o750), (pem, 0o640)):
            os.chown(path, -1, HAPROXY_GID)
            path.chmod(mode)
    admin_password = local["_AIRFLOW_WWW_USER_PASSWORD"]
    flower_hash = subprocess.run(
        ["openssl", "passwd", "-6", "-stdin"], input=admin_password, capture_output=True, text=True, check=True
    ).stdout.strip()
    return {
        **local,
        "_AIRFLOW__CORE__FERNET_KEY": _kept(state, "fernet-key", lambda: Fernet.generate_key().decode()),
        "_AIRFLOW__WEBSERVER__BASE_URL": f"https://{airflow_host}:{https_port}",
        "AIRFLOW_JWT_SECRET": _kept(state, "jwt-secret", lambda: secrets.token_hex(32)),
        "AIRFLOW_API_SECRET_KEY": _kept(state, "api-secret-key", lambda: secrets.token_hex(32)),
        "POSTGRES_PASSWORD": _kept(state, "postgres-password", lambda: secrets.token_hex(16)),
        "REDIS_PASSWORD": _kept(state, "redis-password", lambda: secrets.token_hex(32)),
        # The dev vault stands in for 1Password Connect (the production file requires all three).
        "OP_CONNECT": "http://dev-vault:8089",
        "OP_API_TOKEN": "dev-token-not-secret",
        "OP_VAULT_ID": "DTS Dev",
        "AIRFLOW_HOST": airflow_host,
        "FLOWER_HOST": flower_host,
        "FLOWER_PASSWORD_HASH": flower_hash,
        "PUBLIC_BIND": "127.0.0.1",
        "SSL_DIR": str(certificates),
        **ports,
    }


def host_address() -> str:
    """This host's address as containers reach it (the source of its default route), as Podman's
    host.containers.internal is."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect(("192.0.2.1", 9))  # no packet is sent: this only picks the route
        return str(probe.getsockname()[0])


def host_gateway_override(state: Path) -> Path:
    """Podman 4 has no `host-gateway` (docker-compose-production.yaml's extra_hosts for certbot's
    renewals): an override with this host's address instead."""
    path = state / "host-gateway.override.yaml"
    path.write_text(
        f'services:\n  haproxy:\n    extra_hosts: !override\n      - "host.docker.internal:{host_address()}"\n'
    )
    return path


def new_production_stack(
    engine: Engine, state: Path, local: dict[str, str], ports: dict[str, str], project: str
) -> ContainerStack:
    """docker-compose-production.yaml over the local settings, with certificates and settings kept in `state`."""
    return ContainerStack(
        engine,
        REPO,
        production_settings(state, local, state / "ssl", ports),
        state / "production.env",
        project=project,
        production=True,
        extra_files=(host_gateway_override(state),),
    )


def person_stack(production: bool = False) -> ContainerStack:
    """The stacks of `scripts/containers`: project `airflow`, or `airflow-production` with --production."""
    state = private_dir(default_state_dir())
    (state / "airflow").mkdir(exist_ok=True)
    engine = Engine(state)
    password = _kept(state, "admin-password", lambda: secrets.token_urlsafe(12))
    ports = (os.environ.get("AIRFLOW_PORT", "8080"), os.environ.get("FLOWER_PORT", "8081"))
    settings = local_settings(state / "airflow", engine, password, ports)
    if not production:
        return ContainerStack(engine, REPO, settings, state / "local.env")
    defaults = {"HTTP_PORT": "8480", "HTTPS_PORT": "8443", "POSTGRES_PORT": "15432", "REDIS_PORT": "16379"}
    production_ports = {name: os.environ.get(name, default) for name, default in defaults.items()}
    return new_production_stack(engine, state, settings, production_ports, "airflow-production")


def _engine_missing() -> str | None:
    """What to install, in one line, if a part of the engine is missing."""
    missing = [tool for tool in ("podman", "runc", "mmdebstrap", "busybox", "openssl") if shutil.which(tool) is None]
    missing += [
        p.name for p in map(Path, ("/usr/lib/podman/netavark", "/usr/lib/podman/aardvark-dns")) if not p.exists()
    ]
    if not missing:
        return None
    packages = "podman runc netavark aardvark-dns mmdebstrap busybox-static openssl"
    return (
        f"{', '.join(missing)} missing: install the Debian packages {packages} (scripts/system-packages --containers)"
    )


def up(production: bool) -> int:
    missing = _engine_missing()
    if missing:
        print(f"scripts/containers: no container engine: {missing}", file=sys.stderr)
        return 1
    stack = person_stack(production)
    stack.engine.start()
    stack.engine.start_ticker()
    stack.build()
    stack.up()
    password = stack.settings["_AIRFLOW_WWW_USER_PASSWORD"]
    if production:
        https = stack.settings["HTTPS_PORT"]
        print(f"==> Airflow UI: https://{stack.settings['AIRFLOW_HOST']}:{https}   login: {ADMIN} / {password}")
        print(f"==> Flower: https://{stack.settings['FLOWER_HOST']}:{https}   login: {ADMIN} / {password}")
        print(f"==> self-signed certificate: {stack.settings['SSL_DIR']}/localhost.pem   stop: scripts/containers down")
    else:
        print(f"==> Airflow UI: http://127.0.0.1:{stack.settings['AIRFLOW_PORT']}   login: {ADMIN} / {password}")
        print(f"==> Flower: http://127.0.0.1:{stack.settings['FLOWER_PORT']}   stop: scripts/containers down")
    return 0


def down() -> int:
    """Both of the person's stacks (local and production), then the engine; images stay."""
    local = person_stack()
    if local.engine.running():
        local.down()
        person_stack(production=True).down()
    local.engine.stop()
    print("scripts/containers: down (images kept for the next up)")
    return 0


def status() -> int:
    stack = person_stack()
    if not stack.engine.running():
        print("scripts/containers: not running")
        return 1
    healthy = True
    for each in (stack, person_stack(production=True)):
        for name, row in sorted(each.services().items()):
            state = row.get("Health") or row.get("State", "?")
            healthy &= state in ("healthy", "running") or (name == "airflow-init" and row.get("ExitCode") == 0)
            print(f"{each.project}/{name:24} {state}")
    return 0 if healthy else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="scripts/containers", description="The compose stack as containers on Podman."
    )
    parser.add_argument("action", choices=["up", "down", "status"])
    parser.add_argument(
        "--production", action="store_true", help="add docker-compose-production.yaml (self-signed TLS)"
    )
    args = parser.parse_args(argv)
    if args.action == "up":
        return up(args.production)
    return down() if args.action == "down" else status()


@contextlib.contextmanager
def running(stack: ContainerStack) -> Iterator[ContainerStack]:
    """Build, start and wait for `stack` (from nothing: what an interrupted run left goes first); on exit,
    take it down whatever happened."""
    stack.engine.start()
    stack.engine.start_ticker()
    stack.down()
    try:
        stack.build()
        stack.up()
        yield stack
    finally:
        stack.down()


if __name__ == "__main__":
    sys.exit(main())
