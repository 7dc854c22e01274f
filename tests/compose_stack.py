"""The compose stack's services, run as local processes with the environment compose gives them.

No Docker engine runs here, so each service of docker/docker-compose.yaml runs as a process with
exactly the environment `docker compose config` resolves for it. What a container would provide
is mapped, and only that: container host names (postgres, redis, airflow-apiserver) become
loopback ports, container paths become temporary folders, the Docker socket a container mounts
becomes the Podman socket, and the hostname callable is pinned so that
`airflow jobs check --hostname $HOSTNAME` sees the same name a container would. Everything else is
real: Postgres, Redis with a password, airflow-init.sh (FAB admin user), API server, scheduler,
DAG processor, a Celery worker, Flower, HAProxy (haproxy/haproxy.cfg) in front, and the dev vault
as 1Password Connect.

Used by tests/test_celery_stack.py and by ``scripts/stack up|down|status`` (``python -m
tests.compose_stack``), which runs the same stack for a person with example_dags/ and the sample
vault, and always tears it down.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil

from tests.conftest import (
    REPO,
    SAMPLE_VAULT_FILE,
    TEST_FERNET_KEY,
    Postgres,
    _stop,
    free_port,
    postgres_cluster,
    require_binary,
    wait_for_port,
    wait_until,
)
from tests.test_deploy_compose import config

ADMIN, ADMIN_PASSWORD = "admin", "stack-admin-password"
REDIS_PASSWORD = "redis-password-for-the-stack"
HOSTNAME = socket.gethostname()
HEALTHCHECKED = (
    "airflow-apiserver",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-worker",
    "flower",
    "dev-vault",
)
AIRFLOW_PROCESSES = (
    "airflow-init",
    "airflow-apiserver",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-worker",
    "flower",
    "airflow-cli",
)
LONG_RUNNING = ("airflow-apiserver", "airflow-scheduler", "airflow-dag-processor", "airflow-worker", "flower")
PORT_NAMES = (
    "api",
    "redis",
    "flower",
    "scheduler_health",
    "worker_logs",
    "haproxy_airflow",
    "haproxy_flower",
    "dev_vault",
)


@dataclass
class Stack:
    home: Path
    ports: dict[str, int]
    envs: dict[str, dict[str, str]]
    healthchecks: dict[str, list[str]]
    commands: dict[str, list[str]] = field(default_factory=dict)
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    restart_policies: dict[str, str] = field(default_factory=dict)  # each service's compose `restart:`
    restarted: list[str] = field(default_factory=list)  # by supervise(), in order

    @property
    def ui(self) -> str:
        return f"http://127.0.0.1:{self.ports['haproxy_airflow']}"

    @property
    def flower(self) -> str:
        return f"http://127.0.0.1:{self.ports['haproxy_flower']}"

    def console(self, service: str) -> str:
        return (self.home / f"{service}.log").read_text(errors="replace")

    def alive(self) -> None:
        """Fail if any service exited: what a test calls when nothing may go down."""
        for name, proc in self.procs.items():
            assert proc.poll() is None, f"{name} exited:\n{self.console(name)[-3000:]}"

    def supervise(self) -> dict[str, int]:
        """Do what compose's `restart: always` does: start each such service that exited again.

        Returns the services restarted now with their exit codes (their names are also appended to
        `restarted`); a service a test started under another name has no policy and stays down.
        """
        exited = {
            name: proc.returncode
            for name, proc in self.procs.items()
            if proc.poll() is not None and self.restart_policies.get(name) == "always"
        }
        for name in exited:
            self.start(name)
        self.restarted += exited
        return exited

    def start(self, name: str) -> None:
        """Start (or start again) one service; its console is appended to, never truncated."""
        with (self.home / f"{name}.log").open("a") as out:
            self.procs[name] = subprocess.Popen(
                self.commands[name], env=self.envs[name], stdout=out, stderr=out, start_new_session=True
            )

    def stop(self, name: str) -> None:
        _stop(self.procs.pop(name))


def to_local(value: str, ports: dict[str, int]) -> str:
    """Container host names -> the loopback ports the stack's services listen on."""
    return (
        value.replace("$$", "$")
        .replace("@postgres/", f"@127.0.0.1:{ports['postgres']}/")
        .replace("@redis:6379", f"@127.0.0.1:{ports['redis']}")
        .replace("http://airflow-apiserver:8080", f"http://127.0.0.1:{ports['api']}")
        .replace("http://localhost:8080", f"http://127.0.0.1:{ports['api']}")
        .replace("http://localhost:8974", f"http://127.0.0.1:{ports['scheduler_health']}")
        .replace("http://localhost:5555", f"http://127.0.0.1:{ports['flower']}")
        .replace("http://dev-vault:8089", f"http://127.0.0.1:{ports['dev_vault']}")
        .replace("http://localhost:8089", f"http://127.0.0.1:{ports['dev_vault']}")
    )


def ok(url: str, **kwargs: Any) -> bool:
    try:
        return httpx.get(url, timeout=5, **kwargs).status_code == 200
    except httpx.HTTPError:
        return False


@contextlib.contextmanager
def running_stack(
    home: Path,
    postgres: Postgres,
    dags: Path,
    *,
    vault_file: Path,
    vault: str,
    docker_host: str | None = None,
    extra_env: dict[str, str] | None = None,
) -> Iterator[Stack]:
    """Start every service in ``home`` (consoles as ``<service>.log``); stop them all on exit."""
    ports = {name: free_port() for name in PORT_NAMES}
    database = postgres.new_database(f"stack_{home.name}".replace("-", "_"))
    ports["postgres"] = postgres.port
    compose_env = {
        "ENVIRONMENT": "development",
        "_AIRFLOW_WWW_USER_USERNAME": ADMIN,
        "_AIRFLOW_WWW_USER_PASSWORD": ADMIN_PASSWORD,
        "_AIRFLOW__CORE__FERNET_KEY": TEST_FERNET_KEY,
        "_AIRFLOW__WEBSERVER__BASE_URL": f"http://127.0.0.1:{ports['haproxy_airflow']}",
        # OP_CONNECT and OP_API_TOKEN keep their defaults: the dev-vault service, serving `vault_file`
        "DEVVAULT_FILE": str(vault_file),
        "OP_VAULT_ID": vault,
        "POSTGRES_DB": database.rsplit("/", 1)[1],
        "REDIS_PASSWORD": REDIS_PASSWORD,
    }
    services = config(home, compose_env, profile="*")["services"]
    local = {
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "HOSTNAME": HOSTNAME,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW_CONFIG": str(home / "airflow.cfg"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
        "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(home / "logs"),
        "AIRFLOW__CORE__HOSTNAME_CALLABLE": "socket.gethostname",
        "AIRFLOW__API__PORT": str(ports["api"]),
        "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_PORT": str(ports["scheduler_health"]),
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(ports["worker_logs"]),
        "AIRFLOW__CELERY__FLOWER_PORT": str(ports["flower"]),
        "AIRFLOW__CELERY__WORKER_CONCURRENCY": "2",  # 16 by default; this machine has 2 cores
        **({"DOCKER_HOST": docker_host} if docker_host else {}),  # the socket compose mounts at the default path
        **(extra_env or {}),
    }
    envs = {
        name: {k: to_local(str(v), ports) for k, v in services[name]["environment"].items()} | local
        for name in AIRFLOW_PROCESSES
    }
    healthchecks = {
        name: [to_local(part, ports) for part in services[name]["healthcheck"]["test"]] for name in HEALTHCHECKED
    }
    stack = Stack(home, ports, envs, healthchecks)
    stack.restart_policies = {name: str(service.get("restart", "no")) for name, service in services.items()}
    airflow = str(Path(sys.executable).with_name("airflow"))
    for name in LONG_RUNNING:
        stack.commands[name] = [airflow, *services[name]["command"]]

    # the dev-vault service: its entrypoint and command, the vault file its volume mounts, its token
    dev_vault = services["dev-vault"]
    vault_mount = next(v for v in dev_vault["volumes"] if v["target"] == "/opt/dts/vault.yaml")
    assert vault_mount["source"] == str(vault_file)
    stack.commands["dev-vault"] = [
        {"8089": str(ports["dev_vault"]), "/opt/dts/vault.yaml": vault_mount["source"]}.get(arg, arg)
        for arg in [*dev_vault["entrypoint"], *dev_vault["command"]]
    ]
    envs["dev-vault"] = {k: to_local(str(v), ports) for k, v in dev_vault["environment"].items()} | local
    # Redis's own defaults, as in the compose service: RDB snapshots in its working folder (the image's
    # /data), saved on shutdown and loaded on start, so queued tasks survive a restart there and here
    (home / "redis").mkdir(exist_ok=True)
    stack.commands["redis"] = [
        require_binary("redis-server"),
        *("--port", str(ports["redis"]), "--bind", "127.0.0.1", "--dir", str(home / "redis")),
        *("--requirepass", REDIS_PASSWORD),
    ]
    envs["redis"] = {"PATH": os.environ["PATH"]}
    stack.commands["haproxy"] = [require_binary("haproxy"), "-W", "-db", "-f", str(REPO / "haproxy" / "haproxy.cfg")]
    envs["haproxy"] = {
        "PATH": os.environ["PATH"],
        "HAPROXY_AIRFLOW_BIND": f"127.0.0.1:{ports['haproxy_airflow']}",
        "HAPROXY_FLOWER_BIND": f"127.0.0.1:{ports['haproxy_flower']}",
        "AIRFLOW_APISERVER_ADDR": f"127.0.0.1:{ports['api']}",
        "FLOWER_ADDR": f"127.0.0.1:{ports['flower']}",
    }
    try:
        stack.start("dev-vault")
        wait_for_port(ports["dev_vault"], stack.procs["dev-vault"])
        stack.start("redis")
        wait_for_port(ports["redis"], stack.procs["redis"])
        init = subprocess.run(
            ["bash", str(REPO / "docker" / "airflow-init.sh")],
            env=envs["airflow-init"],
            capture_output=True,
            text=True,
            timeout=300,
        )
        (home / "airflow-init.log").write_text(init.stdout + init.stderr)
        assert init.returncode == 0, (init.stdout + init.stderr)[-5000:]
        for name in LONG_RUNNING:
            stack.start(name)
        stack.start("haproxy")
        wait_until(lambda: ok(f"{stack.ui}/api/v2/monitor/health"), 180, "the API server via HAProxy", stack.alive, 1)
        yield stack
    finally:
        for proc in reversed(list(stack.procs.values())):  # HAProxy first, Redis and the vault last
            _stop(proc)


# -- scripts/stack ---------------------------------------------------------------------------------

STATE = REPO / ".stack" / "state.json"


def up() -> int:
    """Run the stack with example_dags/ and the sample vault until Ctrl-C or `scripts/stack down`."""
    home = REPO / ".stack"
    if STATE.exists() and _running(json.loads(STATE.read_text())["pid"]):
        print("scripts/stack: already running (scripts/stack status)", file=sys.stderr)
        return 1
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir()
    engine = subprocess.run([str(REPO / "scripts" / "podman-setup")], capture_output=True, text=True, check=False)
    docker_host = engine.stdout.strip().splitlines()[-1] if engine.returncode == 0 else None
    stop = False

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stop
        stop = True

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)
    started = time.monotonic()
    with (
        postgres_cluster() as postgres,
        running_stack(
            home,
            postgres,
            REPO / "example_dags",
            vault_file=SAMPLE_VAULT_FILE,
            vault="DTS Dev",
            docker_host=docker_host,
        ) as stack,
    ):
        state = {"pid": os.getpid(), "ui": stack.ui, "flower": stack.flower, "ports": stack.ports}
        STATE.write_text(json.dumps(state))
        print(f"stack up in {time.monotonic() - started:.0f} s; consoles in {home}/<service>.log", flush=True)
        print(f"  Airflow UI (HAProxy): {stack.ui}   login: {ADMIN} / {ADMIN_PASSWORD}", flush=True)
        print(f"  Flower (HAProxy):     {stack.flower}", flush=True)
        print(f"  Docker engine:        {docker_host or 'none (scripts/podman-setup failed)'}", flush=True)
        print("  stop: Ctrl-C or scripts/stack down", flush=True)
        while not stop:
            for name, code in stack.supervise().items():
                print(f"scripts/stack: {name} exited {code}; started again (compose: restart: always)", flush=True)
            time.sleep(1)
        print("scripts/stack: tearing down", flush=True)
    STATE.unlink(missing_ok=True)
    return 0


def _running(pid: int) -> bool:
    """Alive and not a zombie (an `up` that exited but whose parent has not reaped it yet)."""
    try:
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False


def down() -> int:
    if not STATE.exists():
        print("scripts/stack: not running")
        return 0
    pid = json.loads(STATE.read_text())["pid"]
    if _running(pid):
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 120
        while _running(pid) and time.monotonic() < deadline:
            time.sleep(0.5)
    STATE.unlink(missing_ok=True)
    print("scripts/stack: down")
    return 0


def status() -> int:
    if not STATE.exists() or not _running(json.loads(STATE.read_text())["pid"]):
        print("scripts/stack: not running")
        return 1
    state = json.loads(STATE.read_text())
    checks = {
        "API server (via HAProxy)": f"{state['ui']}/api/v2/monitor/health",
        "Flower (via HAProxy)": f"{state['flower']}/healthcheck",
        "dev vault": f"http://127.0.0.1:{state['ports']['dev_vault']}/heartbeat",
    }
    healthy = True
    for what, url in checks.items():
        up_now = ok(url)
        healthy &= up_now
        print(f"{what:26} {'up' if up_now else 'DOWN'}  {url}")
    return 0 if healthy else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/stack", description="The compose stack as local processes.")
    parser.add_argument("action", choices=["up", "down", "status"])
    action = parser.parse_args(argv).action
    return {"up": up, "down": down, "status": status}[action]()


if __name__ == "__main__":
    sys.exit(main())
