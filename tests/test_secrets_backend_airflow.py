"""OnePasswordBackend inside Airflow 3: `dags test`, a real scheduler + DAG processor + API server, and the CLI.

The DAG (tests/dags/secrets_backend_e2e.py) reads values that exist only in 1Password (the dev vault),
through templates, Connection/Variable.get in a task, a hook's *_conn_id, and a top-level Variable.get.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections.abc import Iterator

import httpx
import pytest

from airflow_dts_provider.devvault import DevVaultServer
from tests.conftest import CANARY, AirflowStack, _start, _stop, run_airflow

DAG_ID = "secrets_backend_e2e"


def sha(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


EXPECTED_DIGESTS = {
    "template_conn_password": sha(CANARY),
    "template_variable": sha(CANARY),
    "template_conn_host": sha("db.example.internal:5433"),
    "task_conn_password": sha("warehouse-password"),
    "task_variable": sha("variable-api-key"),
    "task_json_variable": sha("500"),
    "hook_fs_path": sha("/srv/dts-data"),
}


def read_digests(stack: AirflowStack) -> dict[str, str]:
    return {p.stem: p.read_text().strip() for p in stack.digests.glob("*.txt")}


def clear_digests(stack: AirflowStack) -> None:
    shutil.rmtree(stack.digests)
    stack.digests.mkdir()


def assert_no_canary_anywhere(stack: AirflowStack) -> None:
    for task_id, text in stack.task_logs(DAG_ID).items():
        assert CANARY not in text, f"canary in the log of {task_id}"
    assert CANARY not in stack.db_dump(), "canary in the metadata DB"


@pytest.fixture(scope="module")
def dags_test_run(airflow_stack: AirflowStack) -> dict[str, str]:
    clear_digests(airflow_stack)
    result = airflow_stack.dags_test(DAG_ID)
    assert result.returncode == 0, (result.stdout + result.stderr)[-5000:]
    return read_digests(airflow_stack)


def test_dags_test_resolves_everything_from_1password(dags_test_run: dict[str, str]) -> None:
    assert dags_test_run == EXPECTED_DIGESTS


def test_dags_test_leaves_no_canary(dags_test_run: dict[str, str], airflow_stack: AirflowStack) -> None:
    logs = airflow_stack.task_logs(DAG_ID)
    assert set(logs) == {"render_templates", "lookups_in_task", "hook_with_conn_id"}
    assert "***" in logs["render_templates"]  # the rendered command, as logged, is masked
    assert_no_canary_anywhere(airflow_stack)


# -- the real thing: scheduler + DAG processor + API server + LocalExecutor -------------------


#: The DAG processor re-parses every file this often during the test, so a few parse loops fit in PARSE_WINDOW.
PARSE_INTERVAL = 4
PARSE_WINDOW = 13.0


@pytest.fixture(scope="module")
def scheduler_run(
    airflow_stack: AirflowStack, dags_test_run: dict[str, str], devvault_server: DevVaultServer
) -> Iterator[dict[str, object]]:
    """Start scheduler and DAG processor, let them find the DAG, watch a few parse loops, trigger a run."""
    home = airflow_stack.home
    processor_env = {
        **airflow_stack.env,
        "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": str(PARSE_INTERVAL),
        # Left from the Airflow 2 host: 1Password holds the key too and must answer at parse time as at run time.
        "AIRFLOW_VAR_DAG_TAG": "stale-env-copy-from-airflow2",
    }
    procs = [
        _start(["scheduler"], airflow_stack.env, home / "scheduler.log"),
        _start(["dag-processor"], processor_env, home / "dag-processor.log"),
    ]
    api = httpx.Client(base_url=airflow_stack.api_url, timeout=10)
    try:
        get_dag = lambda: api.get(f"/api/v2/dags/{DAG_ID}")  # noqa: E731
        known = wait_for(get_dag, lambda r: r.status_code == 200, 180, procs).json()["last_parsed_time"]
        # `dags test` above stored the DAG already: wait for this DAG processor's own first parse.
        dag = wait_for(get_dag, lambda r: r.json()["last_parsed_time"] != known, 180, procs)
        # Parse loops with nothing else running: every Connect request now comes from DAG parsing.
        devvault_server.reset_counts()
        time.sleep(PARSE_WINDOW)
        parse_requests = list(devvault_server.request_log)
        reparsed = get_dag().json()["last_parsed_time"] != dag.json()["last_parsed_time"]
        assert api.patch(f"/api/v2/dags/{DAG_ID}", json={"is_paused": False}).status_code == 200
        clear_digests(airflow_stack)
        run = api.post(f"/api/v2/dags/{DAG_ID}/dagRuns", json={"logical_date": None})
        assert run.status_code == 200, run.text
        run_id = run.json()["dag_run_id"]
        final = wait_for(
            lambda: api.get(f"/api/v2/dags/{DAG_ID}/dagRuns/{run_id}"),
            lambda r: r.json()["state"] in ("success", "failed"), 240, procs,
        )  # fmt: skip
        rendered = api.get(f"/api/v2/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/render_templates").json()
        yield {
            "parse_requests": parse_requests,
            "reparsed": reparsed,
            "dag": dag.json(),
            "state": final.json()["state"],
            "digests": read_digests(airflow_stack),
            "rendered": rendered["rendered_fields"],
        }
    finally:
        for proc in procs:
            _stop(proc)


def wait_for(call, done, timeout: float, procs) -> httpx.Response:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        response = call()
        if done(response):
            return response
        assert all(p.poll() is None for p in procs), "an Airflow component exited"
        assert time.monotonic() < deadline, f"timed out waiting: {response.status_code} {response.text[:500]}"
        time.sleep(1)


def test_dag_processor_resolved_the_top_level_variable(scheduler_run: dict[str, object]) -> None:
    """From 1Password, although the DAG processor's environment holds a stale copy (issue 27, finding 8:
    parsing children answered from their environment before asking the DAG processor)."""
    dag = scheduler_run["dag"]
    assert isinstance(dag, dict)
    assert {t["name"] for t in dag["tags"]} & {"tag-from-1password", "stale-env-copy-from-airflow2"} == {
        "tag-from-1password"
    }


def test_parse_loops_reuse_the_dag_processors_cache(scheduler_run: dict[str, object]) -> None:
    """Parsing children delegate the top-level Variable.get to the long-lived DAG processor, whose backend
    cached it when the DAG was first parsed: repeated parses cost no Connect request. Without delegation
    every parse is a fresh process and costs an item list and an item (at least 4 in this window)."""
    assert scheduler_run["reparsed"], f"the file was not parsed again within {PARSE_WINDOW}s"
    assert scheduler_run["parse_requests"] == []


def test_scheduled_run_resolves_everything_from_1password(scheduler_run: dict[str, object]) -> None:
    assert scheduler_run["state"] == "success"
    assert scheduler_run["digests"] == EXPECTED_DIGESTS


def test_rendered_fields_show_stars(scheduler_run: dict[str, object]) -> None:
    rendered = json.dumps(scheduler_run["rendered"])
    assert "sha256sum" in rendered and "***" in rendered
    assert CANARY not in rendered


def test_scheduled_run_leaves_no_canary(scheduler_run: dict[str, object], airflow_stack: AirflowStack) -> None:
    assert_no_canary_anywhere(airflow_stack)
    for log in ("dag-processor.log", "api-server.log"):
        assert CANARY not in (airflow_stack.home / log).read_text(), f"canary in {log}"


@pytest.mark.xfail(
    strict=True,
    reason="Airflow 3.3.2's LocalExecutor mirrors task output (here BashOperator's 'Running command:' line) to "
    "the scheduler's console without the masks registered at run time; the task log files are masked. "
    "CeleryExecutor's copy (off by default) is masked: tests/test_celery_stack.py.",
)
def test_scheduler_console_has_no_canary(scheduler_run: dict[str, object], airflow_stack: AirflowStack) -> None:
    assert CANARY not in (airflow_stack.home / "scheduler.log").read_text()


# -- the CLI --------------------------------------------------------------------------------


def test_cli_connections_get(airflow_stack: AirflowStack) -> None:
    result = run_airflow(["connections", "get", "pg_fields", "--output", "json"], airflow_stack.env)
    assert result.returncode == 0, result.stderr[-2000:]
    conn = json.loads(next(line for line in reversed(result.stdout.splitlines()) if line.startswith("[")))[0]
    assert (conn["conn_type"], conn["host"], str(conn["port"]), conn["login"]) == (
        "postgres", "db.example.internal", "5433", "reporter",
    )  # fmt: skip


def test_cli_variables_get(airflow_stack: AirflowStack) -> None:
    result = run_airflow(["variables", "get", "api_key"], airflow_stack.env)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "variable-api-key"


# -- issue 27, findings 8 and 9: a key 1Password holds has one source --------------------------------------
@pytest.mark.parametrize(
    ("kind", "key", "problem"),
    [
        ("variables", "two_values", "exists in several sections (prod, test)"),
        ("variables", "twice", "2 items in vault 'Airflow Vault' are titled 'airflow/variables/twice'"),
        ("connections", "bad_port", "field 'port' is not a number"),
    ],
)
def test_an_unusable_item_stops_airflow_before_a_stale_copy_answers(
    airflow_stack: AirflowStack, kind: str, key: str, problem: str
) -> None:
    """Airflow's own lookup chain (the CLI, in-process): the environment holds a copy from the Airflow 2
    host; 1Password holds the key but cannot give one value. The copy must not be used."""
    stale = f"stale-env-copy-from-airflow2-{key}"
    name = f"AIRFLOW_{'VAR' if kind == 'variables' else 'CONN'}_{key.upper()}"
    copy = stale if kind == "variables" else json.dumps({"conn_type": "generic", "password": stale})
    result = run_airflow([kind, "get", key], {**airflow_stack.env, name: copy})
    assert result.returncode != 0
    assert stale not in result.stdout + result.stderr
    assert problem in result.stdout + result.stderr, result.stderr[-2000:]
