"""The compose stack (tests/compose_stack.py: every service a process with compose's environment) at work.

A secrets DAG and a careless one run on the Celery worker through HAProxy; the compose
healthchecks, Flower and the airflow-cli command are checked against the running services.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from tests.compose_stack import ADMIN, ADMIN_PASSWORD, HOSTNAME, Stack, running_stack
from tests.conftest import (
    CANARY,
    TESTS,
    VAULT_FILE,
    Postgres,
    _postgres_bin,
    _start,
    canaries_in,
    free_port,
    run_airflow,
    wait_for_port,
    wait_until,
)
from tests.slack_standin import SlackStandIn
from tests.test_deploy_compose import config
from tests.test_secrets_backend_airflow import EXPECTED_DIGESTS

DAG_ID = "secrets_backend_e2e"
HEARTBEAT_TIMEOUT = 60  # [scheduler] task_instance_heartbeat_timeout for this stack, in seconds
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


# What the team's DAGs do, on the Celery worker: a container with 1Password secrets, alerts to Slack.
TEAM_DAGS = """
import os
import pendulum
from airflow.sdk import dag, task
from airflow_dts_provider.hooks.onepassword import OnePasswordHook
from airflow_dts_provider.notifications.slack import SlackNotifier
from airflow_dts_provider.operators.docker import SecretDockerOperator

START = pendulum.datetime(2026, 1, 1)


def alerts(kind, conn_id="slack_alerts"):
    return [SlackNotifier(kind=kind, slack_conn_id=conn_id, environments=["development"], mentions=[])]


@dag(schedule=None, start_date=START, catchup=False, tags=["repo:atd-knack-services"])
def team_docker_e2e():
    SecretDockerOperator(
        task_id="container",
        image="localhost/dts-busybox:latest",
        docker_url=os.environ["DOCKER_HOST"],
        secrets={"CANARY_VALUE": "op://Docker Vault/Canary/secret"},
        command=["sh", "-c", 'echo "value: $CANARY_VALUE"'],
        mount_tmp_dir=False,
        on_success_callback=alerts("success"),
    )


@dag(schedule=None, start_date=START, catchup=False, tags=["repo:atd-executive-dashboard"])
def team_failing_e2e():
    @task(on_failure_callback=alerts("failure"))
    def breaks():
        raise RuntimeError("the source API answered 503")

    breaks()


@dag(schedule=None, start_date=START, catchup=False)
def team_slack_down_e2e():
    @task(on_success_callback=alerts("success", "slack_down"))
    def works():
        print("fine")

    @task(on_failure_callback=alerts("failure", "slack_down"))
    def breaks():
        raise RuntimeError("the source API answered 503")

    works()
    breaks()


@dag(schedule=None, start_date=START, catchup=False, tags=["repo:atd-knack-services"])
def team_slow_e2e():
    @task
    def slow():
        import time

        time.sleep(20)

    slow()


@dag(schedule=None, start_date=START, catchup=False)
def team_outage_e2e():
    @task
    def works_through(run_id=None, ti=None):
        import os
        import pathlib
        import time

        from airflow.sdk import Variable

        # tell the test to take Postgres down now, for 35 s
        pathlib.Path(os.environ["DTS_E2E_SIGNAL_DIR"], run_id).touch()
        time.sleep(2)
        # each second, during the outage and after it: a Variable kept in 1Password (read by the
        # worker's secrets backend, no database) and an XCom (through the API server to the database)
        end = time.monotonic() + 45
        while time.monotonic() < end:
            assert Variable.get("dag_tag") == "tag-from-1password"
            ti.xcom_push(key="tick", value=round(end - time.monotonic()))
            time.sleep(1)

    works_through()


# A DAG as the team writes them for jobs that may be retried: one retry, soon.
RETRY_SOON = {"retries": 1, "retry_delay": pendulum.duration(seconds=3)}


@dag(schedule=None, start_date=START, catchup=False, default_args=RETRY_SOON)
def team_retried_e2e():
    @task
    def slow():
        import time

        time.sleep(20)

    slow()


# The load test's task: the same 10 secrets over 3 items, as a typical ETL task reads them.
LOAD_SECRETS = {
    **{f"LOGIN_{n}": f"op://Team Vault/Login Item/{f}" for n, f in enumerate(["username", "password"])},
    **{f"CANARY_{n}": f"op://Team Vault/Canary/{f}" for n, f in enumerate(["secret", "other"] * 2)},
    **{f"EXTRA_{n}": f"op://Team Vault/Login Item/extra/Password" for n in range(4)},
}


@dag(schedule=None, start_date=START, catchup=False, max_active_runs=50)
def team_load_e2e():
    @task
    def resolve():
        values = OnePasswordHook().resolve_many(LOAD_SECRETS)
        assert len(values) == 10

    resolve()


team_docker_e2e()
team_failing_e2e()
team_slack_down_e2e()
team_load_e2e()
team_slow_e2e()
team_retried_e2e()
team_outage_e2e()
"""


@pytest.fixture(scope="module")
def stack(
    tmp_path_factory: pytest.TempPathFactory, postgres: Postgres, docker_url: str, slack_standin: SlackStandIn
) -> Iterator[Stack]:
    home = tmp_path_factory.mktemp("celery_stack")
    dags = home / "dags"
    dags.mkdir()
    shutil.copy(TESTS / "dags" / f"{DAG_ID}.py", dags)
    (dags / f"{CARELESS_DAG_ID}.py").write_text(CARELESS_DAG)
    (dags / "team_e2e.py").write_text(TEAM_DAGS)
    (home / "digests").mkdir()
    (home / "signals").mkdir()
    extra = {
        "DTS_E2E_DIGEST_DIR": str(home / "digests"),
        "DTS_E2E_SIGNAL_DIR": str(home / "signals"),
        # Slack is on the internet: a local stand-in takes the webhook, and a closed port plays "unreachable"
        "AIRFLOW_CONN_SLACK_ALERTS": json.dumps(
            {"conn_type": "slackwebhook", "host": f"{slack_standin.url}/webhook", "password": "T000/B000/XXXX"}
        ),
        # Airflow's 300 s default stays in production (README); a shorter wait keeps the worker-kill test in budget
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": str(HEARTBEAT_TIMEOUT),
        "AIRFLOW_CONN_SLACK_DOWN": json.dumps(
            {"conn_type": "slackwebhook", "host": f"http://127.0.0.1:{free_port()}/webhook", "password": "T0/B0/X"}
        ),
    }
    with running_stack(
        home, postgres, dags, vault_file=VAULT_FILE, vault="Airflow Vault", docker_host=docker_url, extra_env=extra
    ) as stack:
        yield stack
        # After every test of the module, whatever their order: nothing any run did left a canary behind.
        sweep_for_canaries(stack, postgres)


def sweep_for_canaries(stack: Stack, postgres: Postgres) -> None:
    """Search the metadata DB dump (XComs, rendered fields, ...), every task log and every console."""
    database = stack.envs["airflow-cli"]["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].rsplit("/", 1)[1]
    dump = subprocess.run(
        [_postgres_bin("pg_dump"), "-h", "127.0.0.1", "-p", str(postgres.port), "-U", "airflow", database],
        capture_output=True, text=True, timeout=120, check=True,
    ).stdout  # fmt: skip
    assert "COPY public.xcom " in dump and "COPY public.task_instance " in dump
    places = {"pg_dump": dump}
    places |= {str(p.relative_to(stack.home)): p.read_text(errors="replace") for p in stack.home.glob("logs/**/*.log")}
    places |= {p.name: p.read_text(errors="replace") for p in stack.home.glob("*.log")}  # every service's console
    found = sorted(f"{canary} in {where}" for where, text in places.items() for canary in canaries_in(text))
    task_logs = sum(1 for where in places if where.startswith("logs/"))
    consoles = len(places) - task_logs - 1
    print(f"canary sweep: 1 pg_dump ({len(dump) // 1024} KiB), {task_logs} task logs, {consoles} consoles")
    assert task_logs >= 10, "the sweep found too few task logs to mean anything"
    assert found == []


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


def wait_parsed(stack: Stack, api: httpx.Client, dag_id: str) -> None:
    wait_until(lambda: api.get(f"/dags/{dag_id}").status_code == 200, 180, f"{dag_id} parsed", stack.alive, 1)


def wait_for_run(
    stack: Stack, api: httpx.Client, dag_id: str, run_id: str, timeout: float = 300, *, restart_exited: bool = False
) -> str:
    """Wait until the run ends; its final state.

    A service that exits meanwhile fails the wait, or with `restart_exited` is started again as
    compose's restart policy would.
    """

    def ended() -> bool:
        with contextlib.suppress(httpx.HTTPError, ValueError, KeyError):  # KeyError: a 5xx's body
            return api.get(f"/dags/{dag_id}/dagRuns/{run_id}").json()["state"] in ("success", "failed")
        return False

    wait_until(ended, timeout, f"{dag_id} {run_id} to end", stack.supervise if restart_exited else stack.alive, 1)
    state: str = api.get(f"/dags/{dag_id}/dagRuns/{run_id}").json()["state"]
    return state


def run_dag(stack: Stack, api: httpx.Client, dag_id: str) -> tuple[dict[str, Any], str]:
    """Wait for the DAG processor, unpause, trigger through the REST API, wait for the run to end.

    Returns the DAG as it was before it was unpaused, and the run id.
    """
    wait_parsed(stack, api, dag_id)
    dag = api.get(f"/dags/{dag_id}").json()
    run_id = trigger(stack, api, dag_id)
    wait_for_run(stack, api, dag_id, run_id, timeout=240)
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
    stack.stop("airflow-worker")
    worker = f"airflow-worker-mirroring-{mirroring}"
    env = stack.envs["airflow-worker"] | {"AIRFLOW__CELERY__TASK_LOGS_TO_STDOUT": mirroring}
    stack.procs[worker] = _start(["celery", "worker"], env, stack.home / f"{worker}.log")
    try:
        _, run_id = run_dag(stack, api, CARELESS_DAG_ID)
    finally:  # the other tests expect the compose worker back
        stack.stop(worker)
        stack.start("airflow-worker")
    assert api.get(f"/dags/{CARELESS_DAG_ID}/dagRuns/{run_id}").json()["state"] == "success", stack.console(worker)
    response = api.get(f"/dags/{CARELESS_DAG_ID}/dagRuns/{run_id}/taskInstances/careless/logs/1")
    log = json.dumps(response.json())
    assert "careless print: ***" in log
    assert "careless log line: ***" in log
    assert CANARY not in log
    console = stack.console(worker)
    assert CANARY not in console
    assert ("careless print: ***" in console) == (mirroring == "true")


# -- what the team relies on, on the Celery worker -------------------------------------------------


def task_log(api: httpx.Client, dag_id: str, run_id: str, task_id: str) -> str:
    response = api.get(f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/logs/1")
    assert response.status_code == 200, response.text
    return json.dumps(response.json())


def webhook_texts(slack_standin: SlackStandIn, since: int) -> list[str]:
    return [json.dumps(m["body"]) for m in slack_standin.archive[since:] if m["path"].startswith("/webhook/")]


def test_secret_docker_task_runs_on_the_worker_and_alerts_reach_slack(
    stack: Stack, api: httpx.Client, slack_standin: SlackStandIn
) -> None:
    since = len(slack_standin.archive)
    _, run_id = run_dag(stack, api, "team_docker_e2e")
    log = task_log(api, "team_docker_e2e", run_id, "container")
    assert api.get(f"/dags/team_docker_e2e/dagRuns/{run_id}").json()["state"] == "success", log[-4000:]
    assert "value: ***" in log and CANARY not in log
    (instance,) = api.get(f"/dags/team_docker_e2e/dagRuns/{run_id}/taskInstances").json()["task_instances"]
    assert instance["hostname"] == HOSTNAME and instance["queue"] == "default"
    texts = webhook_texts(slack_standin, since)
    assert any("team_docker_e2e" in t and "container" in t for t in texts), texts

    since = len(slack_standin.archive)
    _, run_id = run_dag(stack, api, "team_failing_e2e")
    assert api.get(f"/dags/team_failing_e2e/dagRuns/{run_id}").json()["state"] == "failed"
    texts = webhook_texts(slack_standin, since)
    assert any("team_failing_e2e" in t and "the source API answered 503" in t for t in texts), texts
    assert (
        all(CANARY not in t for t in slack_standin.archive_texts()) if hasattr(slack_standin, "archive_texts") else True
    )


def test_slack_unreachable_keeps_task_states_and_logs_the_alert_as_not_sent(stack: Stack, api: httpx.Client) -> None:
    _, run_id = run_dag(stack, api, "team_slack_down_e2e")
    instances = api.get(f"/dags/team_slack_down_e2e/dagRuns/{run_id}/taskInstances").json()["task_instances"]
    assert {ti["task_id"]: ti["state"] for ti in instances} == {"works": "success", "breaks": "failed"}
    assert "Slack success alert not sent" in task_log(api, "team_slack_down_e2e", run_id, "works")
    assert "Slack failure alert not sent" in task_log(api, "team_slack_down_e2e", run_id, "breaks")


def vault_requests(stack: Stack) -> Counter[str]:
    """Connect requests the dev vault has answered, by route (its /metrics, as Connect's)."""
    metrics = httpx.get(f"http://127.0.0.1:{stack.ports['dev_vault']}/metrics", timeout=10).text
    counts: Counter[str] = Counter()
    for line in metrics.splitlines():
        if match := re.match(r'devvault_requests_total\{route="([^"]+)"\} (\d+)', line):
            counts[match[1]] = int(match[2])
    counts.pop("metrics", None)  # this very question
    return counts


def test_connect_down_fails_tasks_clearly_and_the_stack_recovers_without_restarts(
    stack: Stack, api: httpx.Client
) -> None:
    wait_parsed(stack, api, "team_docker_e2e")
    stack.stop("dev-vault")
    down_at = time.monotonic()
    parsed_before = api.get("/dags/team_docker_e2e/details").json()["last_parsed_time"]
    _, run_id = run_dag(stack, api, "team_docker_e2e")
    assert api.get(f"/dags/team_docker_e2e/dagRuns/{run_id}").json()["state"] == "failed"
    log = task_log(api, "team_docker_e2e", run_id, "container")
    assert "1Password Connect" in log, log[-3000:]
    assert CANARY not in log
    stack.alive()  # scheduler, DAG processor, API server, worker, Flower all still up
    # parsing goes on: the DAG processor parses the file again while Connect is down
    wait_until(
        lambda: api.get("/dags/team_docker_e2e/details").json()["last_parsed_time"] != parsed_before,
        120, "a re-parse while Connect is down", stack.alive, 2,
    )  # fmt: skip
    print(f"Connect down: the run failed clearly {time.monotonic() - down_at:.0f} s after the stop")

    stack.start("dev-vault")
    back_at = time.monotonic()
    _, run_id = run_dag(stack, api, "team_docker_e2e")
    assert api.get(f"/dags/team_docker_e2e/dagRuns/{run_id}").json()["state"] == "success"
    recovery = time.monotonic() - back_at
    print(f"Connect back: the next run succeeded {recovery:.0f} s after the restart; nothing else was restarted")


def test_fifty_runs_at_once_all_succeed_with_few_connect_requests(stack: Stack, api: httpx.Client) -> None:
    dag_id = "team_load_e2e"
    wait_parsed(stack, api, dag_id)
    assert api.patch(f"/dags/{dag_id}", json={"is_paused": False}).status_code == 200
    requests_before = vault_requests(stack)
    worker = psutil.Process(stack.procs["airflow-worker"].pid)
    peak = 0
    started = time.monotonic()
    run_ids = []
    for _ in range(50):
        run = api.post(f"/dags/{dag_id}/dagRuns", json={"logical_date": None})
        assert run.status_code == 200, run.text
        run_ids.append(run.json()["dag_run_id"])
    while True:
        with contextlib.suppress(psutil.Error):
            tree = [worker, *worker.children(recursive=True)]
            peak = max(peak, sum(p.memory_info().rss for p in tree if p.is_running()))
        runs = api.get(f"/dags/{dag_id}/dagRuns", params={"limit": 100}).json()["dag_runs"]
        states = {r["dag_run_id"]: r["state"] for r in runs if r["dag_run_id"] in run_ids}
        if len(states) == 50 and all(state in ("success", "failed") for state in states.values()):
            break
        assert time.monotonic() - started < 900, f"not done after 900 s: {sorted(states.values())}"
        stack.alive()
        time.sleep(1)
    wall = time.monotonic() - started
    requests = vault_requests(stack) - requests_before
    print(
        f"load: 50 runs x 10 secrets over 2 items: {wall:.0f} s wall, {requests.total()} Connect requests "
        f"({requests.total() / 50:.1f} per task; by route {dict(sorted(requests.items()))}; the secrets backend's "
        f"lookups and the DAG processor's parse loop included), worker peak memory {peak / 2**20:.0f} MiB "
        "(worker + task processes)"
    )
    assert sorted(states.values()) == ["success"] * 50
    # the figure that matters: each task process fetches each distinct item once (the title index and
    # the cache do the rest); a little slack for the backend's own item reads in the same window
    assert requests["item"] <= 50 * 2 + 10, requests
    assert requests.total() <= 50 * 8, requests


def fab(stack: Stack, *args: str) -> None:
    result = run_airflow(list(args), stack.envs["airflow-cli"], timeout=120)
    assert result.returncode == 0, (result.stdout + result.stderr)[-2000:]


def test_dag_repositories_through_haproxy_show_only_what_the_fab_user_may_read(stack: Stack, api: httpx.Client) -> None:
    """Production's auth manager (FAB): a role that may read one DAG sees that DAG and its repository only."""
    wait_parsed(stack, api, "team_failing_e2e")
    fab(stack, "roles", "create", "KnackOnly")
    fab(stack, "roles", "add-perms", "KnackOnly", "--action", "can_read", "--resource", "DAG:team_docker_e2e")
    fab(
        stack, "users", "create", "--username", "knack", "--password", "knack-only-password", "--role", "KnackOnly",
        "--firstname", "Knack", "--lastname", "Only", "--email", "knack@example.org",
    )  # fmt: skip
    login = httpx.post(f"{stack.ui}/auth/token", json={"username": "knack", "password": "knack-only-password"})
    assert login.status_code in (200, 201), login.text
    limited = {"Authorization": f"Bearer {login.json()['access_token']}"}

    page = httpx.get(f"{stack.ui}/dts/repositories.json", headers=limited, timeout=30)
    assert page.status_code == 200, page.text
    data = page.json()
    assert [(r["name"], [d["dag_id"] for d in r["dags"]]) for r in data["repositories"]] == [
        ("atd-knack-services", ["team_docker_e2e"])
    ]
    assert data["dags_without_repo"] == [] and data["dag_count"] == 1
    html = httpx.get(f"{stack.ui}/dts/repositories", headers=limited, timeout=30).text
    assert "team_docker_e2e" in html and "team_failing_e2e" not in html and "atd-executive-dashboard" not in html

    everything = httpx.get(f"{stack.ui}/dts/repositories.json", headers=api.headers, timeout=30).json()
    assert {r["name"] for r in everything["repositories"]} >= {"atd-knack-services", "atd-executive-dashboard"}
    assert everything["dag_count"] >= 6
    for path in ("/dts/repositories.json", "/dts/repositories"):
        assert httpx.get(f"{stack.ui}{path}", timeout=30).status_code in (401, 403), path


# -- faults: each one asserted, each with its recovery time ----------------------------------------


def trigger(stack: Stack, api: httpx.Client, dag_id: str) -> str:
    """Unpause and trigger a parsed DAG through the REST API; the run id."""
    wait_parsed(stack, api, dag_id)
    assert api.patch(f"/dags/{dag_id}", json={"is_paused": False}).status_code == 200
    run = api.post(f"/dags/{dag_id}/dagRuns", json={"logical_date": None})
    assert run.status_code == 200, run.text
    run_id: str = run.json()["dag_run_id"]
    return run_id


def task_state(api: httpx.Client, dag_id: str, run_id: str, task_id: str = "slow") -> str | None:
    state: str | None = api.get(f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}").json().get("state")
    return state


def start_slow_run(stack: Stack, api: httpx.Client, dag_id: str = "team_slow_e2e") -> str:
    """Trigger a DAG whose task `slow` takes 20 s and return its run id once the task runs on the worker."""
    run_id = trigger(stack, api, dag_id)
    wait_until(lambda: task_state(api, dag_id, run_id) == "running", 120, "the slow task to run", stack.alive, 0.5)
    return run_id


def task_story(stack: Stack, dag_id: str, run_id: str) -> str:
    """What a failed run's task log files and the worker and scheduler consoles end with: a failure's diagnosis."""
    logs = sorted(stack.home.glob(f"logs/dag_id={dag_id}/run_id={run_id}/**/*.log"))
    parts = [f"--- {p.relative_to(stack.home)}\n{p.read_text(errors='replace')[-3000:]}" for p in logs]
    parts += [f"--- {name} console\n{stack.console(name)[-4000:]}" for name in ("airflow-worker", "airflow-scheduler")]
    return "\n".join(parts)


def assert_nothing_stuck(api: httpx.Client) -> None:
    stuck = api.get("/dags/~/dagRuns", params={"state": ["running", "queued"]}).json()["dag_runs"]
    assert stuck == [], [(r["dag_id"], r["dag_run_id"], r["state"]) for r in stuck]


def test_scheduler_killed_mid_run_and_restarted(stack: Stack, api: httpx.Client) -> None:
    run_id = start_slow_run(stack, api)
    scheduler = stack.procs.pop("airflow-scheduler")
    os.killpg(scheduler.pid, signal.SIGKILL)
    scheduler.wait()
    stack.start("airflow-scheduler")
    restarted = time.monotonic()
    assert wait_for_run(stack, api, "team_slow_e2e", run_id) == "success", stack.console("airflow-scheduler")[-3000:]
    print(f"scheduler SIGKILLed mid-task: the run finished {time.monotonic() - restarted:.0f} s after the restart")
    assert_nothing_stuck(api)


def test_postgres_down_while_a_task_runs(stack: Stack, api: httpx.Client, postgres: Postgres) -> None:
    """Postgres down for 35 s (a restart that takes a while: an upgrade, a host reboot) as a task runs.

    A task's XComs, heartbeats and its end go through the API server, which answers 500 while the
    database is down. Airflow's task client gives up after 5 tries (4-15 s of waits), so the task
    failed; compose gives it 12 tries 5-10 s apart (60-90 s). Variables kept in 1Password need no
    database at all. Airflow's scheduler and DAG processor loops do not retry a refused connection:
    they exit, and compose's `restart: always` (Stack.supervise here) starts them again. Nothing
    else may exit; the run and the next one succeed.
    """
    run_id = trigger(stack, api, "team_outage_e2e")
    down = stack.home / "signals" / run_id
    wait_until(down.exists, 120, "the task to start its loop", stack.alive, 0.2)
    restarted_before = len(stack.restarted)
    postgres.restart(down_for=35)
    back = time.monotonic()
    state = wait_for_run(stack, api, "team_outage_e2e", run_id, restart_exited=True)
    assert state == "success", task_story(stack, "team_outage_e2e", run_id)
    # its loop went on after the outage (which ended about 10 s before the loop): the last XCom is
    # from its last seconds (the value counts down to 0; a slow second may skip one)
    tick = api.get(f"/dags/team_outage_e2e/dagRuns/{run_id}/taskInstances/works_through/xcomEntries/tick").json()
    assert int(tick["value"]) <= 3, tick
    restarted = stack.restarted[restarted_before:]
    print(
        f"Postgres down 35 s while a task read a Variable and pushed an XCom each second: the run finished "
        f"{time.monotonic() - back:.0f} s after it was back; restarted by the restart policy: {restarted or 'nothing'}"
    )
    assert set(restarted) <= {"airflow-scheduler", "airflow-dag-processor"}, restarted
    stack.alive()
    # and the next run goes through the reconnected services
    _, next_run = run_dag(stack, api, "team_failing_e2e")
    assert api.get(f"/dags/team_failing_e2e/dagRuns/{next_run}").json()["state"] == "failed"  # as designed
    assert_nothing_stuck(api)


def test_redis_restarted_mid_run(stack: Stack, api: httpx.Client) -> None:
    run_id = start_slow_run(stack, api)
    stack.stop("redis")
    stack.start("redis")
    wait_for_port(stack.ports["redis"], stack.procs["redis"])
    back = time.monotonic()
    assert wait_for_run(stack, api, "team_slow_e2e", run_id) == "success"
    in_flight = time.monotonic() - back
    # the worker reconnects to the broker by itself: a new run is queued, picked up and finished
    new_run = api.post("/dags/team_slow_e2e/dagRuns", json={"logical_date": None}).json()["dag_run_id"]
    assert wait_for_run(stack, api, "team_slow_e2e", new_run) == "success", stack.console("airflow-worker")[-3000:]
    print(
        f"Redis restarted mid-task: the run in flight finished {in_flight:.0f} s after Redis was back, "
        f"a new run {time.monotonic() - back:.0f} s after; no service restarted"
    )
    stack.alive()
    assert_nothing_stuck(api)


def test_worker_killed_mid_task_is_retried_by_airflow(stack: Stack, api: httpx.Client) -> None:
    """SIGKILL takes the worker, the task's supervisor and the task at once: nobody reports the end.

    The scheduler's heartbeat check finds the task instance silent, fails this try and, as the DAG
    sets one retry, queues the next on the restarted worker.
    """
    run_id = start_slow_run(stack, api, "team_retried_e2e")
    worker = stack.procs.pop("airflow-worker")
    os.killpg(worker.pid, signal.SIGKILL)
    worker.wait()
    killed = time.monotonic()
    stack.start("airflow-worker")
    state = wait_for_run(stack, api, "team_retried_e2e", run_id, timeout=HEARTBEAT_TIMEOUT + 240)
    assert state == "success", stack.console("airflow-scheduler")[-3000:]
    ti = api.get(f"/dags/team_retried_e2e/dagRuns/{run_id}/taskInstances/slow").json()
    assert ti["try_number"] == 2
    tries = api.get(f"/dags/team_retried_e2e/dagRuns/{run_id}/taskInstances/slow/tries").json()["task_instances"]
    assert [t["state"] for t in sorted(tries, key=lambda t: t["try_number"])] == ["failed", "success"]
    print(
        f"Celery worker SIGKILLed mid-task: try 1 failed by the heartbeat check ({HEARTBEAT_TIMEOUT} s timeout), "
        f"try 2 succeeded {time.monotonic() - killed:.0f} s after the kill"
    )
    stack.alive()
    assert_nothing_stuck(api)


def test_a_queued_task_survives_a_redis_restart(stack: Stack, api: httpx.Client) -> None:
    """With no worker listening, the task waits in Redis; Redis restarts (it saves and reloads, as in compose)."""
    worker = stack.procs.pop("airflow-worker")
    os.killpg(worker.pid, signal.SIGTERM)  # a warm shutdown: nothing was running
    worker.wait(timeout=120)
    run_id = trigger(stack, api, "team_slack_down_e2e")
    wait_until(lambda: task_state(api, "team_slack_down_e2e", run_id, "works") == "queued", 60, "the task queued")
    stack.stop("redis")
    stack.start("redis")
    wait_for_port(stack.ports["redis"], stack.procs["redis"])
    stack.start("airflow-worker")
    back = time.monotonic()
    assert wait_for_run(stack, api, "team_slack_down_e2e", run_id) == "failed"  # `breaks` fails as designed
    assert task_state(api, "team_slack_down_e2e", run_id, "works") == "success"
    print(
        f"a task queued in Redis across a Redis restart ran {time.monotonic() - back:.0f} s after the worker came back"
    )
    stack.alive()
    assert_nothing_stuck(api)


def test_a_run_triggered_while_redis_is_down_runs_once_redis_is_back(stack: Stack, api: httpx.Client) -> None:
    """The scheduler cannot hand the task to Celery: it keeps the task queued and tries again (compose's settings)."""
    stack.stop("redis")
    down = time.monotonic()
    run_id = trigger(stack, api, "team_slow_e2e")  # no retries: a failed hand-over would fail the run
    wait_until(lambda: "Celery Task Timeout Error" in stack.console("airflow-scheduler"), 60, "a publish retry")
    time.sleep(10)
    assert task_state(api, "team_slow_e2e", run_id) == "queued"
    stack.start("redis")
    wait_for_port(stack.ports["redis"], stack.procs["redis"])
    back = time.monotonic()
    assert wait_for_run(stack, api, "team_slow_e2e", run_id) == "success", stack.console("airflow-scheduler")[-3000:]
    assert api.get(f"/dags/team_slow_e2e/dagRuns/{run_id}/taskInstances/slow").json()["try_number"] == 1
    print(
        f"a run triggered while Redis was down ({back - down:.0f} s): its task started "
        f"{time.monotonic() - back - 20:.0f} s after Redis was back and succeeded on its first try"
    )
    stack.alive()
    assert_nothing_stuck(api)
