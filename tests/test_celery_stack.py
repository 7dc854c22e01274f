"""The compose stack's services, run as local processes with the environment compose gives them.

No Docker engine runs here, so each service of docker/docker-compose.yaml runs as a process with
exactly the environment `docker compose config` resolves for it. What a container would provide
is mapped, and only that: container host names (postgres, redis, airflow-apiserver) become
loopback ports, container paths become temporary folders, and the hostname callable is pinned so
that `airflow jobs check --hostname $HOSTNAME` sees the same name a container would. Everything
else is real: Postgres, Redis with a password, airflow-init.sh (FAB admin user), API server,
scheduler, DAG processor, a Celery worker, Flower, HAProxy (haproxy/haproxy.cfg) in front, and the
dev vault as 1Password Connect.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import (
    CANARY,
    REPO,
    TEST_FERNET_KEY,
    TESTS,
    VAULT_FILE,
    Postgres,
    _start,
    _stop,
    free_port,
    require_binary,
    run_airflow,
    wait_for_port,
    wait_until,
)
from tests.test_deploy_compose import config
from tests.test_secrets_backend_airflow import EXPECTED_DIGESTS

DAG_ID = "secrets_backend_e2e"
CARELESS_DAG_ID = "careless_logging_e2e"
# A task that prints a secret by mistake, the way a DAG author might while debugging.
CARELESS_DAG = """
import logging
import pendulum
from airflow.sdk import Variable, dag, task


@dag(schedule=None, start_date=pendulum.datetime(2026, 1, 1), catchup=False)
def careless_logging_e2e():
    @task
    def careless() -> None:
        value = Variable.get("canary_var")
        print(f"careless print: {value}")
        logging.getLogger(__name__).info("careless log line: %s", value)

    careless()


careless_logging_e2e()
"""
ADMIN, ADMIN_PASSWORD = "admin", "stack-admin-password"
REDIS_PASSWORD = "redis-password-for-the-stack"
HOSTNAME = socket.gethostname()
REDIS_NO_PERSISTENCE = ("--save", "", "--appendonly", "no")
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


@dataclass
class Stack:
    home: Path
    ports: dict[str, int]
    envs: dict[str, dict[str, str]]
    healthchecks: dict[str, list[str]]
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def ui(self) -> str:
        return f"http://127.0.0.1:{self.ports['haproxy_airflow']}"

    @property
    def flower(self) -> str:
        return f"http://127.0.0.1:{self.ports['haproxy_flower']}"

    def console(self, service: str) -> str:
        return (self.home / f"{service}.log").read_text(errors="replace")

    def alive(self) -> None:
        for name, proc in self.procs.items():
            assert proc.poll() is None, f"{name} exited:\n{self.console(name)[-3000:]}"


def to_local(value: str, ports: dict[str, int]) -> str:
    """Container host names -> the loopback ports the test's services listen on."""
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


@contextlib.contextmanager
def redis_server(port: int, log: Path) -> Iterator[None]:
    redis = require_binary("redis-server")
    with log.open("w") as out:
        proc = subprocess.Popen(
            [
                redis,
                *("--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"),
                "--requirepass",
                REDIS_PASSWORD,
            ],
            stdout=out,
            stderr=out,
        )
    try:
        wait_for_port(port, proc)
        yield
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, postgres: Postgres) -> Iterator[Stack]:
    home = tmp_path_factory.mktemp("celery_stack")
    dags = home / "dags"
    dags.mkdir()
    shutil.copy(TESTS / "dags" / f"{DAG_ID}.py", dags)
    (dags / f"{CARELESS_DAG_ID}.py").write_text(CARELESS_DAG)
    (home / "digests").mkdir()
    names = (
        "api",
        "redis",
        "flower",
        "scheduler_health",
        "worker_logs",
        "haproxy_airflow",
        "haproxy_flower",
        "dev_vault",
    )
    ports = {name: free_port() for name in names}
    database = postgres.new_database("celery_stack")
    ports["postgres"] = postgres.port
    compose_env = {
        "ENVIRONMENT": "development",
        "_AIRFLOW_WWW_USER_USERNAME": ADMIN,
        "_AIRFLOW_WWW_USER_PASSWORD": ADMIN_PASSWORD,
        "_AIRFLOW__CORE__FERNET_KEY": TEST_FERNET_KEY,
        "_AIRFLOW__WEBSERVER__BASE_URL": f"http://127.0.0.1:{ports['haproxy_airflow']}",
        # OP_CONNECT and OP_API_TOKEN keep their defaults: the dev-vault service, serving the tests' vault
        "DEVVAULT_FILE": str(VAULT_FILE),
        "OP_VAULT_ID": "Airflow Vault",
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
        "DTS_E2E_DIGEST_DIR": str(home / "digests"),
    }
    envs = {
        name: {k: to_local(str(v), ports) for k, v in services[name]["environment"].items()} | local
        for name in AIRFLOW_PROCESSES
    }
    healthchecks = {
        name: [to_local(part, ports) for part in services[name]["healthcheck"]["test"]] for name in HEALTHCHECKED
    }
    stack = Stack(home, ports, envs, healthchecks)

    # the dev-vault service: its entrypoint and command, the vault file its volume mounts, its token
    dev_vault = services["dev-vault"]
    vault_mount = next(v for v in dev_vault["volumes"] if v["target"] == "/opt/dts/vault.yaml")
    assert vault_mount["source"] == str(VAULT_FILE)
    dev_vault_argv = [
        {"8089": str(ports["dev_vault"]), "/opt/dts/vault.yaml": vault_mount["source"]}.get(arg, arg)
        for arg in [*dev_vault["entrypoint"], *dev_vault["command"]]
    ]
    envs["dev-vault"] = {k: to_local(str(v), ports) for k, v in dev_vault["environment"].items()} | local
    haproxy: subprocess.Popen[bytes] | None = None
    try:
        with (home / "dev-vault.log").open("w") as out:
            stack.procs["dev-vault"] = subprocess.Popen(
                dev_vault_argv, env=envs["dev-vault"], stdout=out, stderr=out, start_new_session=True
            )
        wait_for_port(ports["dev_vault"], stack.procs["dev-vault"])
        with redis_server(ports["redis"], home / "redis.log"):
            init = subprocess.run(
                ["bash", str(REPO / "docker" / "airflow-init.sh")],
                env=envs["airflow-init"],
                capture_output=True,
                text=True,
                timeout=300,
            )
            (home / "airflow-init.log").write_text(init.stdout + init.stderr)
            assert init.returncode == 0, (init.stdout + init.stderr)[-5000:]
            for name in ("airflow-apiserver", "airflow-scheduler", "airflow-dag-processor", "airflow-worker", "flower"):
                stack.procs[name] = _start(list(services[name]["command"]), envs[name], home / f"{name}.log")
            haproxy_env = {
                "PATH": os.environ["PATH"],
                "HAPROXY_AIRFLOW_BIND": f"127.0.0.1:{ports['haproxy_airflow']}",
                "HAPROXY_FLOWER_BIND": f"127.0.0.1:{ports['haproxy_flower']}",
                "AIRFLOW_APISERVER_ADDR": f"127.0.0.1:{ports['api']}",
                "FLOWER_ADDR": f"127.0.0.1:{ports['flower']}",
                "HAPROXY_DNS": "127.0.0.1:1",
            }
            with (home / "haproxy.log").open("w") as out:
                haproxy = subprocess.Popen(
                    [require_binary("haproxy"), "-W", "-db", "-f", str(REPO / "haproxy" / "haproxy.cfg")],
                    env=haproxy_env,
                    stdout=out,
                    stderr=out,
                )
            wait_until(
                lambda: ok(f"{stack.ui}/api/v2/monitor/health"), 180, "the API server via HAProxy", stack.alive, 1
            )
            yield stack
    finally:
        if haproxy is not None:
            haproxy.terminate()
            haproxy.wait(10)
        for proc in stack.procs.values():
            _stop(proc)


def ok(url: str, **kwargs: Any) -> bool:
    try:
        return httpx.get(url, timeout=5, **kwargs).status_code == 200
    except httpx.HTTPError:
        return False


def token(stack: Stack, password: str = ADMIN_PASSWORD) -> httpx.Response:
    return httpx.post(f"{stack.ui}/auth/token", json={"username": ADMIN, "password": password}, timeout=30)


@pytest.fixture(scope="module")
def api(stack: Stack) -> httpx.Client:
    response = token(stack)
    assert response.status_code in (200, 201), response.text
    return httpx.Client(
        base_url=f"{stack.ui}/api/v2",
        headers={"Authorization": f"Bearer {response.json()['access_token']}"},
        timeout=30,
    )


def test_admin_user_from_airflow_init_logs_in_through_haproxy(stack: Stack) -> None:
    assert token(stack, "not-the-password").status_code == 401
    assert token(stack).status_code in (200, 201)


def run_dag(stack: Stack, api: httpx.Client, dag_id: str) -> tuple[dict[str, Any], str]:
    """Wait for the DAG processor, unpause, trigger through the REST API, wait for the run to end.

    Returns the DAG as it was before it was unpaused, and the run id.
    """
    wait_until(lambda: api.get(f"/dags/{dag_id}").status_code == 200, 180, f"{dag_id} parsed", stack.alive, 1)
    dag = api.get(f"/dags/{dag_id}").json()
    assert api.patch(f"/dags/{dag_id}", json={"is_paused": False}).status_code == 200
    run = api.post(f"/dags/{dag_id}/dagRuns", json={"logical_date": None})
    assert run.status_code == 200, run.text
    run_id: str = run.json()["dag_run_id"]
    wait_until(
        lambda: api.get(f"/dags/{dag_id}/dagRuns/{run_id}").json()["state"] in ("success", "failed"),
        240,
        f"a run of {dag_id}",
        stack.alive,
        interval=1,
    )
    return dag, run_id


@pytest.fixture(scope="module")
def dag_run(stack: Stack, api: httpx.Client) -> dict[str, Any]:
    dag, run_id = run_dag(stack, api, DAG_ID)
    instances = api.get(f"/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances").json()["task_instances"]
    return {"dag": dag, "run_id": run_id, "instances": instances}


def test_new_dags_start_paused(dag_run: dict[str, Any]) -> None:
    assert dag_run["dag"]["is_paused"] is True


def test_dag_runs_on_the_celery_worker_with_secrets_from_1password(stack: Stack, dag_run: dict[str, Any]) -> None:
    states = {ti["task_id"]: ti["state"] for ti in dag_run["instances"]}
    assert states == dict.fromkeys(("render_templates", "lookups_in_task", "hook_with_conn_id"), "success"), (
        stack.console("airflow-worker")[-3000:]
    )
    # the worker resolved every value through the [workers] secrets backend
    digests = {p.stem: p.read_text().strip() for p in (stack.home / "digests").glob("*.txt")}
    assert digests == EXPECTED_DIGESTS
    # and it was the Celery worker that ran them
    worker_console = stack.console("airflow-worker")
    assert "execute_workload" in worker_console
    assert all(ti["hostname"] == HOSTNAME for ti in dag_run["instances"])


def test_no_secret_in_task_logs_or_worker_console(stack: Stack, api: httpx.Client, dag_run: dict[str, Any]) -> None:
    response = api.get(f"/dags/{DAG_ID}/dagRuns/{dag_run['run_id']}/taskInstances/render_templates/logs/1")
    assert response.status_code == 200, response.text
    log = json.dumps(response.json())
    assert "sha256sum" in log  # the rendered command was logged ...
    assert CANARY not in log  # ... with the secret masked
    assert "***" in log
    for service in ("airflow-worker", "airflow-scheduler", "airflow-dag-processor", "airflow-apiserver", "flower"):
        assert CANARY not in stack.console(service), f"canary in the console of {service}"


def test_flower_through_haproxy_shows_the_worker(stack: Stack, dag_run: dict[str, Any]) -> None:
    response = httpx.get(f"{stack.flower}/workers", timeout=30)
    assert response.status_code == 200
    assert f"celery@{HOSTNAME}" in response.text
    assert httpx.get(f"{stack.flower}/healthcheck", timeout=30).text == "OK"


def test_compose_healthchecks_pass_against_the_running_services(stack: Stack, dag_run: dict[str, Any]) -> None:
    for name, check in stack.healthchecks.items():
        kind, *command = check
        argv = ["sh", "-c", command[0]] if kind == "CMD-SHELL" else command
        result = subprocess.run(argv, env=stack.envs[name], capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, f"{name}: {argv}\n{result.stdout}\n{result.stderr}"


def test_the_teams_dags_test_command_runs_with_the_cli_environment(stack: Stack, dag_run: dict[str, Any]) -> None:
    """`docker compose run --rm airflow-cli dags test <dag-id>`: the image runs `airflow dags test`."""
    digests = stack.home / "digests"
    for old in digests.glob("*.txt"):
        old.unlink()
    result = run_airflow(["dags", "test", DAG_ID], stack.envs["airflow-cli"], timeout=240)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    assert {p.stem: p.read_text().strip() for p in digests.glob("*.txt")} == EXPECTED_DIGESTS


def test_remote_worker_environment_points_at_the_main_host(tmp_path: Path) -> None:
    """The remote worker's settings resolve to the main host's Redis, Postgres and API server."""
    services = config(
        tmp_path,
        {"AIRFLOW_MAIN_HOST": "main.internal", "_AIRFLOW__WEBSERVER__BASE_URL": "https://airflow.internal"},
        profile="remote-worker",
    )["services"]
    env = services["airflow-remote-worker"]["environment"]
    assert "@main.internal:6379/" in env["AIRFLOW__CELERY__BROKER_URL"]
    assert "@main.internal:5432/" in env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
    assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "https://airflow.internal/execution/"
    assert services["airflow-remote-worker"]["command"][-1] == "remote"
    assert json.loads(env["AIRFLOW__WORKERS__SECRETS_BACKEND_KWARGS"])["vault"]


@pytest.mark.parametrize("mirroring", ["false", "true"])
def test_a_careless_print_is_masked_in_task_log_and_worker_console(
    stack: Stack, api: httpx.Client, dag_run: dict[str, Any], mirroring: str
) -> None:
    """With [celery] task_logs_to_stdout off (compose) or on, a secret printed by a task shows as ***."""
    for name in [n for n in stack.procs if n.startswith("airflow-worker")]:
        _stop(stack.procs.pop(name))
    worker = f"airflow-worker-mirroring-{mirroring}"
    env = stack.envs["airflow-worker"] | {"AIRFLOW__CELERY__TASK_LOGS_TO_STDOUT": mirroring}
    stack.procs[worker] = _start(["celery", "worker"], env, stack.home / f"{worker}.log")
    _, run_id = run_dag(stack, api, CARELESS_DAG_ID)
    assert api.get(f"/dags/{CARELESS_DAG_ID}/dagRuns/{run_id}").json()["state"] == "success", stack.console(worker)
    response = api.get(f"/dags/{CARELESS_DAG_ID}/dagRuns/{run_id}/taskInstances/careless/logs/1")
    log = json.dumps(response.json())
    assert "careless print: ***" in log
    assert "careless log line: ***" in log
    assert CANARY not in log
    console = stack.console(worker)
    assert CANARY not in console
    assert ("careless print: ***" in console) == (mirroring == "true")
