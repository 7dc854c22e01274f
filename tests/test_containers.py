"""The stack as the team runs it: docker/Dockerfile built and docker/docker-compose.yaml up as containers.

Podman from Debian serves the Docker API (tests/container_engine.py) and the registry images are
local stand-ins (tests/standin_images.py); everything else is the product as it is: the compose
file with the dev-vault profile, docker/Dockerfile built through compose, haproxy/haproxy.cfg,
airflow-init.sh, the example DAGs on the Celery worker, the Docker socket mounted into the worker.
The README's commands run verbatim (tests/containers.py gives them a `docker compose`).
"""

from __future__ import annotations

import json
import os
import re
import signal
import ssl
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.conftest import REPO, SAMPLE_VAULT_FILE, free_port, wait_until
from tests.container_engine import Engine
from tests.containers import ADMIN, LONG_RUNNING, ContainerStack, local_settings, running, wait_for

#: The first test of the module also waits for the images and the stack (about 4 minutes on 2 cores).
pytestmark = pytest.mark.timeout(1500)

ADMIN_PASSWORD = "containers-admin-password"
README = (REPO / "README.md").read_text()
EXAMPLE_DAGS = sorted(
    re.search(r"^def (example_\w+)\(", p.read_text(), re.MULTILINE).group(1)  # type: ignore[union-attr]
    for p in (REPO / "example_dags").glob("*.py")
)


def sample_vault_secrets() -> list[str]:
    """Every concealed or password value of the sample vault the dev-vault service serves."""
    data = yaml.safe_load(SAMPLE_VAULT_FILE.read_text())
    return sorted(
        field["value"]
        for vault in data["vaults"]
        for item in vault["items"]
        for field in item.get("fields", [])
        if (field.get("type") == "CONCEALED" or field.get("purpose") == "PASSWORD") and len(field["value"]) >= 5
    )


def readme_commands(pattern: str) -> list[str]:
    """The distinct README commands starting with `pattern` (a regex): in a code block or between backticks."""
    found = set()
    for line in README.splitlines():
        found |= {m.strip() for m in re.findall(rf"`({pattern}[^`]*)`", line)}
        if re.match(rf"\s*{pattern}", line) and "`" not in line:
            found.add(line.strip())
    assert found, f"README has no command like {pattern!r}"
    return sorted(found)


def readme_command(pattern: str) -> str:
    (command,) = readme_commands(pattern)
    return command


def stack_settings(tmp: Path, engine: Engine) -> dict[str, str]:
    return local_settings(tmp / "project", engine, ADMIN_PASSWORD, (str(free_port()), str(free_port())))


@pytest.fixture(scope="module")
def local_stack(tmp_path_factory: pytest.TempPathFactory, container_engine: Engine) -> Iterator[ContainerStack]:
    tmp = tmp_path_factory.mktemp("containers")
    (tmp / "project").mkdir()
    stack = ContainerStack(
        container_engine, REPO, stack_settings(tmp, container_engine), tmp / "stack.env", project="dts-tests"
    )
    with running(stack):
        yield stack
        print("container stack timings: " + "; ".join(stack.log))
        # After every test of the module, whatever their order: no sample-vault secret anywhere.
        sweep(stack, tmp / "project" / "logs")


def sweep(stack: ContainerStack, logs: Path, runs: int = len(EXAMPLE_DAGS)) -> None:
    """Every service's console, every task log and a pg_dump of the metadata DB hold no sample-vault secret."""
    dump = stack.sh('docker compose exec -T postgres sh -c \'pg_dump -U "$POSTGRES_USER" "$POSTGRES_DB"\'').stdout
    assert "COPY public.xcom " in dump and "COPY public.task_instance " in dump
    places = {"pg_dump": dump, "docker compose logs": stack.logs()}
    places |= {str(p.relative_to(logs)): p.read_text(errors="replace") for p in logs.glob("dag_id=*/**/*.log")}
    secrets = sample_vault_secrets()
    found = sorted(f"{secret} in {where}" for where, text in places.items() for secret in secrets if secret in text)
    task_logs = len(places) - 2
    print(f"secret sweep: {len(secrets)} values; pg_dump {len(dump) // 1024} KiB, every console, {task_logs} task logs")
    assert task_logs >= runs, "the sweep found too few task logs to mean anything"
    assert found == []


def api(stack: ContainerStack, *, url: str | None = None, verify: ssl.SSLContext | bool = True) -> httpx.Client:
    """A REST API client logged in as the admin (through HAProxy's local port unless `url` says otherwise)."""
    ui = url or f"http://127.0.0.1:{stack.settings['AIRFLOW_PORT']}"
    login = {"username": ADMIN, "password": ADMIN_PASSWORD}
    response = httpx.post(f"{ui}/auth/token", json=login, timeout=30, verify=verify)
    assert response.status_code in (200, 201), response.text
    token = response.json()["access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    return httpx.Client(base_url=f"{ui}/api/v2", headers=headers, timeout=30, verify=verify)


def run_dag(client: httpx.Client, dag_id: str, timeout: float = 300) -> tuple[str, str]:
    """Wait until `dag_id` is parsed, unpause it, trigger it, wait for the run to end: (run id, state)."""
    wait_until(lambda: client.get(f"/dags/{dag_id}").status_code == 200, 180, f"{dag_id} parsed", interval=1)
    assert client.patch(f"/dags/{dag_id}", json={"is_paused": False}).status_code == 200
    response = client.post(f"/dags/{dag_id}/dagRuns", json={"logical_date": None})
    assert response.status_code == 200, response.text
    run_id = response.json()["dag_run_id"]

    def state() -> str:
        return str(client.get(f"/dags/{dag_id}/dagRuns/{run_id}").json()["state"])

    wait_until(lambda: state() in ("success", "failed"), timeout, f"{dag_id} to end", interval=2)
    return run_id, state()


@pytest.fixture(scope="module")
def example_runs(local_stack: ContainerStack) -> dict[str, dict[str, Any]]:
    """Every example DAG, triggered through the REST API and run by the Celery worker."""
    client = api(local_stack)
    runs: dict[str, dict[str, Any]] = {}
    for dag_id in EXAMPLE_DAGS:
        started = time.monotonic()
        run_id, state = run_dag(client, dag_id)
        instances = client.get(f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances").json()["task_instances"]
        runs[dag_id] = {"run_id": run_id, "state": state, "instances": instances, "seconds": time.monotonic() - started}
    print("example runs: " + ", ".join(f"{d} {r['seconds']:.0f} s" for d, r in runs.items()))
    return runs


def test_every_service_is_healthy_and_init_completed(local_stack: ContainerStack) -> None:
    services = local_stack.services()
    for name in LONG_RUNNING:
        row = services[name]
        assert row["State"] == "running", (name, row)
        if name != "haproxy":  # the image has no curl; HAProxy checks the services behind it instead
            assert row["Health"] == "healthy", (name, row)
    assert services["airflow-init"]["State"] == "exited"
    assert services["airflow-init"]["ExitCode"] == 0
    init = local_stack.logs("airflow-init")
    assert "airflow-init: done" in init
    assert "Added user admin" in init or "already exist" in init, init[-2000:]


def healthcheck(stack: ContainerStack, service: str) -> list[str]:
    """The service's health check as the engine runs it (`compose config` prints '$' escaped as '$$')."""
    test = [part.replace("$$", "$") for part in stack.config()["services"][service]["healthcheck"]["test"]]
    return ["sh", "-c", test[1]] if test[0] == "CMD-SHELL" else test[1:]


@pytest.mark.parametrize(
    ("service", "elsewhere"),
    [
        ("airflow-dag-processor", "airflow-triggerer"),
        ("airflow-triggerer", "airflow-scheduler"),
        ("airflow-worker", "flower"),
    ],
)
def test_a_health_check_checks_its_own_service(local_stack: ContainerStack, service: str, elsewhere: str) -> None:
    """Each check passes in its container and fails in another one (it names this container's host)."""
    check = healthcheck(local_stack, service)
    assert local_stack.exec(service, *check, check=False).returncode == 0
    assert local_stack.exec(elsewhere, *check, check=False).returncode != 0


def test_login_and_flower_through_haproxy(local_stack: ContainerStack) -> None:
    ui = f"http://127.0.0.1:{local_stack.settings['AIRFLOW_PORT']}"
    assert wait_for(f"{ui}/api/v2/monitor/health").json()["metadatabase"]["status"] == "healthy"
    assert httpx.post(f"{ui}/auth/token", json={"username": ADMIN, "password": "wrong"}, timeout=30).status_code == 401
    assert api(local_stack).get("/dags", params={"limit": 1}).status_code == 200
    assert "<html" in httpx.get(f"{ui}/", timeout=30, follow_redirects=True).text.lower()
    flower = f"http://127.0.0.1:{local_stack.settings['FLOWER_PORT']}"
    assert wait_for(f"{flower}/healthcheck").text == "OK"
    worker_host = local_stack.exec("airflow-worker", "hostname").stdout.strip()
    assert f"celery@{worker_host}" in httpx.get(f"{flower}/workers", timeout=30).text


def test_every_example_dag_succeeds_on_the_celery_worker(
    local_stack: ContainerStack, example_runs: dict[str, dict[str, Any]]
) -> None:
    assert {dag: run["state"] for dag, run in example_runs.items()} == dict.fromkeys(EXAMPLE_DAGS, "success")
    worker_host = local_stack.exec("airflow-worker", "hostname").stdout.strip()
    hosts = {ti["hostname"] for run in example_runs.values() for ti in run["instances"]}
    assert hosts == {worker_host}


def test_secret_docker_ran_a_sibling_container_through_the_mounted_socket(
    local_stack: ContainerStack, example_runs: dict[str, dict[str, Any]]
) -> None:
    run = example_runs["example_secret_docker"]
    client = api(local_stack)
    response = client.get(f"/dags/example_secret_docker/dagRuns/{run['run_id']}/taskInstances/knack_to_socrata/logs/1")
    assert response.status_code == 200, response.text
    log = json.dumps(response.json())
    assert "publishing with app *** (values are masked: ***)" in log  # every value handed out is masked
    # The socket the worker has is this engine's: through it the worker sees the stack's own containers.
    assert (
        local_stack.exec("airflow-worker", "sh", "-c", "echo $DOCKER_HOST").stdout.strip()
        == "unix:///var/run/docker.sock"
    )
    listed = local_stack.exec(
        "airflow-worker", "curl", "-sf", "--unix-socket", "/var/run/docker.sock", "http://engine/containers/json"
    ).stdout
    assert local_stack.container("airflow-worker") in {
        name.lstrip("/") for c in json.loads(listed) for name in c["Names"]
    }
    # and the task's container is gone (auto_remove="force")
    left = local_stack.engine.podman(
        "ps", "-a", "--filter", "ancestor=localhost/dts-busybox:latest", "--format", "{{.ID}}"
    )
    assert left.stdout.strip() == ""


def test_readme_dags_test_command_runs_a_dag(local_stack: ContainerStack) -> None:
    commands = readme_commands(r"docker compose run --rm [^`]*airflow-cli dags test")
    containers = {name: row["ID"] for name, row in local_stack.services().items()}
    for command in commands:
        dag_id = "example_onepassword_hook"
        result = local_stack.sh(re.sub(r"<dag-id>|<id>|example_\w+$", dag_id, command))
        assert f"DagRun Finished: dag_id={dag_id}" in result.stdout + result.stderr, command
        assert "state=success" in (result.stdout + result.stderr).split("DagRun Finished:")[-1], command
    # The stack's own containers are left as they were: without --no-deps, compose on Podman recreates
    # the running dependencies (Postgres, Redis, the dev vault) of every `run`.
    assert {name: row["ID"] for name, row in local_stack.services().items()} == containers


def test_a_killed_container_comes_back(local_stack: ContainerStack) -> None:
    """The scheduler's processes SIGKILLed from the host (as the OOM killer would): restart: always."""
    name = local_stack.container("airflow-scheduler")
    before = json.loads(local_stack.engine.podman("inspect", "--format", "json", name).stdout)[0]
    os.kill(int(before["State"]["Pid"]), signal.SIGKILL)

    def restarted() -> dict[str, Any]:
        state: dict[str, Any] = json.loads(local_stack.engine.podman("inspect", "--format", "json", name).stdout)[0]
        return state

    wait_until(lambda: restarted()["RestartCount"] > before["RestartCount"], 60, "the scheduler restarted", interval=1)
    wait_until(
        lambda: local_stack.services()["airflow-scheduler"]["Health"] == "healthy", 240, "healthy again", interval=2
    )
    assert restarted()["State"]["Pid"] != before["State"]["Pid"]


def row_counts(stack: ContainerStack, tables: list[str]) -> dict[str, int]:
    env = stack.config()["services"]["postgres"]["environment"]
    query = " UNION ALL ".join(f"SELECT '{t}', count(*) FROM {t}" for t in tables)
    psql = ["psql", "-At", "-F=", "-U", env["POSTGRES_USER"], env["POSTGRES_DB"], "-c", query]
    return {line.split("=")[0]: int(line.split("=")[1]) for line in stack.exec("postgres", *psql).stdout.split()}


def test_readme_backup_and_restore_round_trip(
    local_stack: ContainerStack, example_runs: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    """README's backup, restored with README's command into a fresh Postgres volume: the same rows."""
    backup = readme_command(r"docker compose exec -T postgres sh -c 'pg_dump")
    restore = readme_command(r"gunzip -c FILE \| docker compose exec -T postgres")
    tables = ["dag", "dag_run", "task_instance", "ab_user", "xcom", "serialized_dag"]
    counts = row_counts(local_stack, tables)
    assert counts["dag_run"] >= len(EXAMPLE_DAGS) and counts["ab_user"] == 1
    local_stack.sh(backup.replace("airflow-db-$(date +%F).sql.gz", str(tmp_path / "airflow-db-$(date +%F).sql.gz")))
    (dumped,) = tmp_path.glob("airflow-db-*.sql.gz")
    fresh = ContainerStack(
        local_stack.engine, REPO, local_stack.settings, local_stack.env_file, project="dts-tests-restore"
    )
    try:
        fresh.compose("up", "-d", "--wait", "postgres")
        fresh.sh(restore.replace("FILE", str(dumped)))
        assert row_counts(fresh, tables) == counts
    finally:
        fresh.compose("down", "--volumes")


def test_up_without_an_engine_says_what_to_install_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.containers import main

    monkeypatch.setenv("PATH", str(tmp_path))  # no podman, runc, mmdebstrap, busybox or openssl here
    monkeypatch.setenv("DTS_CONTAINERS_DIR", str(tmp_path / "state"))
    assert main(["up"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert "podman, runc, mmdebstrap, busybox, openssl missing: install the Debian packages" in err
    assert not (tmp_path / "state").exists()  # nothing was made before the engine check
