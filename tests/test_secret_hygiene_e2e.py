"""Issue 13 in real runs: `airflow dags test --use-executor` with the real supervisor, task logs, XCom and
rendered fields in the metadata DB, the API server, the Podman engine and the Slack stand-in.

The DAGs are tests/dags/secret_hygiene_e2e.py. The last test sweeps everything the session ran for
every canary value (tests/conftest.py: CANARIES).
"""

from __future__ import annotations

import json
import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import docker
import httpx
import pytest

from airflow_dts_provider.operators.docker import SecretDockerOperator
from tests.conftest import CANARIES, CANARY, TOKEN, AirflowStack, canaries_in
from tests.dags.secret_hygiene_e2e import FAILED_CONTAINER, IMAGE
from tests.slack_standin import SlackStandIn

SAMPLE_WAREHOUSE_PASSWORD = "dev-warehouse-password"  # airflow_dts_provider/devvault/sample_vault.yaml
HYGIENE_DAGS = (
    "hygiene_docker_e2e", "hygiene_templates_e2e", "hygiene_encoded_e2e", "hygiene_token_e2e", "hygiene_slack_e2e",
)  # fmt: skip


def stored_rows(stack: AirflowStack, dag_id: str, table: str, task_id: str) -> list[str]:
    column = "value" if table == "xcom" else "rendered_fields"
    with sqlite3.connect(stack.home / "airflow.db") as db:
        rows = db.execute(f"SELECT {column} FROM {table} WHERE dag_id = ? AND task_id = ?", (dag_id, task_id))
        return [str(r[0]) for r in rows.fetchall()]


@pytest.fixture(scope="module")
def hygiene_runs(airflow_stack: AirflowStack, docker_url: str, slack_standin: SlackStandIn) -> dict[str, Any]:
    slack_standin.reset()
    codes = {dag_id: airflow_stack.dags_test(dag_id).returncode for dag_id in HYGIENE_DAGS}
    logs = {dag_id: airflow_stack.task_logs(dag_id) for dag_id in HYGIENE_DAGS}
    return {"codes": codes, "logs": logs, "slack": list(slack_standin.messages)}


def printed(log: str) -> str:
    """What a task wrote, line by line, from its log file (one JSON object per line)."""
    return "\n".join(str(json.loads(line).get("event", "")) for line in log.splitlines() if line.startswith("{"))


def slack_text_for(runs: dict[str, Any], task_id: str) -> tuple[str, list[dict[str, Any]]]:
    body = next(m["body"] for m in runs["slack"] if f"hygiene_slack_e2e.{task_id}" in m["body"]["text"])
    blocks = json.loads(body["blocks"]) if isinstance(body["blocks"], str) else body["blocks"]
    return body["text"], blocks


# ------------------------------------------------------------------------------------- 1. token
def test_a_token_with_a_line_ending_fails_clearly_and_shows_nowhere(hygiene_runs: dict[str, Any]) -> None:
    log = hygiene_runs["logs"]["hygiene_slack_e2e"]["lookup_with_newline_token"]
    assert "whitespace or control characters" in log
    assert TOKEN not in log and "Bearer" not in log and "LocalProtocolError" not in log
    text, blocks = slack_text_for(hygiene_runs, "lookup_with_newline_token")
    assert "whitespace or control characters" in text
    assert TOKEN not in text + json.dumps(blocks)


# ------------------------------------------------------------------------------------- 2. lines
def test_a_multi_line_secret_is_masked_line_by_line_in_the_log_and_xcom(
    hygiene_runs: dict[str, Any], airflow_stack: AirflowStack
) -> None:
    log = hygiene_runs["logs"]["hygiene_docker_e2e"]["multiline"]
    assert "value: ***" in log, "the container printed the first line"
    assert "MULTI-CANARY" not in log
    xcom = stored_rows(airflow_stack, "hygiene_docker_e2e", "xcom", "multiline")
    assert xcom == ['"***"'], "the last output line (the second line of the secret) went to XCom, scrubbed"


# ------------------------------------------------------------------------------------- 3. extras
def test_connection_extras_are_masked_in_rendered_fields_and_the_log(
    hygiene_runs: dict[str, Any], airflow_stack: AirflowStack
) -> None:
    log = hygiene_runs["logs"]["hygiene_templates_e2e"]["connection_extras"]
    assert "section extra: ***" in log and "json extra: ***" in log
    rendered = stored_rows(airflow_stack, "hygiene_templates_e2e", "rendered_task_instance_fields", "connection_extras")
    assert rendered and "section extra: ***" in rendered[0]
    assert "EXTRA-" not in log + "".join(rendered)


# ------------------------------------------------------------------------------------- 4. Slack
def test_an_exception_cannot_ping_or_phish_through_the_alert(hygiene_runs: dict[str, Any]) -> None:
    text, blocks = slack_text_for(hygiene_runs, "hostile_error")
    everything = text + json.dumps(blocks)
    for raw in ("<!channel>", "<@U123>", "<https://evil.example"):
        assert raw not in everything, raw
    assert "&lt;!channel&gt;" in text and "&lt;https://evil.example|Re-authenticate here&gt;" in text
    error = next(b["text"]["text"] for b in blocks if b.get("text", {}).get("text", "").startswith("*Error*"))
    assert error.count("```") == 2 and error.endswith("closing fence```")


# ------------------------------------------------------------------------------------- 6. containers
def test_a_failed_container_that_held_secrets_is_removed(hygiene_runs: dict[str, Any], docker_url: str) -> None:
    log = hygiene_runs["logs"]["hygiene_docker_e2e"]["failed_container"]
    assert "Docker container failed" in log, "the container ran and failed"
    engine = docker.APIClient(base_url=docker_url)
    assert engine.containers(all=True, filters={"name": FAILED_CONTAINER}) == []


@pytest.fixture
def kept_container(docker_url: str) -> Iterator[str]:
    name = f"dts-hygiene-kept-{uuid.uuid4().hex[:8]}"
    yield name
    engine = docker.APIClient(base_url=docker_url)
    for found in engine.containers(all=True, filters={"name": name}):
        engine.remove_container(found["Id"], force=True)


def test_opting_out_keeps_the_container_and_says_it_holds_secrets(
    docker_url: str, onepassword_docker_conn: None, kept_container: str, capfd: pytest.CaptureFixture[str]
) -> None:
    op = SecretDockerOperator(
        task_id="kept", image=IMAGE, docker_url=docker_url, command=["sh", "-c", "exit 3"], mount_tmp_dir=False,
        secrets={"CANARY_SECRET": "op://Docker Vault/Canary/secret"}, auto_remove="never",
        container_name=kept_container,
    )  # fmt: skip
    with pytest.raises(Exception, match="Docker container failed"):
        op.execute({})
    printed = capfd.readouterr()
    warning = next(line for line in (printed.out + printed.err).splitlines() if "auto_remove=" in line)
    assert "the container is kept and holds the secrets CANARY_SECRET" in warning and CANARY not in warning
    engine = docker.APIClient(base_url=docker_url)
    (found,) = engine.containers(all=True, filters={"name": kept_container})
    env = engine.inspect_container(found["Id"])["Config"]["Env"]
    assert f"CANARY_SECRET={CANARY}" in env, "what the warning is about: the kept container holds the value"


@pytest.fixture
def onepassword_docker_conn(monkeypatch: pytest.MonkeyPatch, airflow_stack: AirflowStack) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_ONEPASSWORD_DEFAULT", airflow_stack.env["AIRFLOW_CONN_ONEPASSWORD_DEFAULT"])


# ------------------------------------------------------------------------------------- XCom guard
def test_the_xcom_backend_keeps_secrets_out_of_any_operators_xcom(
    hygiene_runs: dict[str, Any], airflow_stack: AirflowStack
) -> None:
    bash = stored_rows(airflow_stack, "hygiene_templates_e2e", "xcom", "echoes_a_password")
    assert bash == ['"password: ***"']
    # a dict return is stored whole and (multiple_outputs, inferred from the annotation) per key
    returned = [json.loads(v) for v in stored_rows(airflow_stack, "hygiene_templates_e2e", "xcom", "returns_a_secret")]
    assert sorted(map(json.dumps, returned)) == sorted(
        map(json.dumps, [{"careless": "***", "fine": "not secret"}, "***", "not secret"])
    )


def test_the_example_keeps_its_password_out_of_xcom_even_without_the_guard(airflow_stack: AirflowStack) -> None:
    """The example as scripts/dev runs it (the sample vault 'DTS Dev'), with Airflow's plain XCom backend."""
    kwargs = {**json.loads(airflow_stack.env["AIRFLOW__SECRETS__BACKEND_KWARGS"]), "vault": "DTS Dev"}
    result = airflow_stack.dags_test(
        "example_secrets_backend",
        AIRFLOW__CORE__XCOM_BACKEND="airflow.sdk.bases.xcom.BaseXCom",
        AIRFLOW__SECRETS__BACKEND_KWARGS=json.dumps(kwargs),
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    assert (
        "password (masked in the log and the Rendered Template view): ***"
        in (airflow_stack.task_logs("example_secrets_backend")["templates"])
    )
    assert stored_rows(airflow_stack, "example_secrets_backend", "xcom", "templates") == []
    assert SAMPLE_WAREHOUSE_PASSWORD not in airflow_stack.db_dump()


# ------------------------------------------------------------------------------------- encoded forms
def test_a_password_is_masked_in_get_uri_json_repr_and_html_in_logs_xcom_and_rendered_fields(
    hygiene_runs: dict[str, Any], airflow_stack: AirflowStack
) -> None:
    """Issue 27, finding 1, in a real run: every form comes out ``***``; what is around it stays readable."""
    assert hygiene_runs["codes"]["hygiene_encoded_e2e"] == 0
    logs = hygiene_runs["logs"]["hygiene_encoded_e2e"]
    forms = printed(logs["prints_encoded_forms"])
    assert "dsn: postgres://dts_reader:***@warehouse.example.internal/dts?sslkey=***" in logs["dsn_from_get_uri"]
    assert '{"password": "***"}' in forms and "{'password': '***', 'extra': {'sslkey': '***'}}" in forms
    assert "form: *** html: ***" in forms
    assert {name: canaries_in(log) for name, log in logs.items()} == {name: [] for name in logs}
    stored = {
        (table, task_id): stored_rows(airflow_stack, "hygiene_encoded_e2e", table, task_id)
        for table in ("xcom", "rendered_task_instance_fields")
        for task_id in ("dsn_from_get_uri", "prints_encoded_forms", "shows_rendered_fields")
    }
    assert "postgres://dts_reader:***@" in "".join(stored[("xcom", "dsn_from_get_uri")])
    (rendered,) = stored[("rendered_task_instance_fields", "shows_rendered_fields")]
    assert json.loads(rendered)["op_kwargs"]["as_json"] == '"***"', rendered  # the dsn is masked whole (Airflow)
    assert [key for key, rows in stored.items() if canaries_in("".join(rows))] == []


# ------------------------------------------------------------------------------------- the token
def test_a_task_printing_its_environment_shows_no_connect_token_and_still_looks_up(
    hygiene_runs: dict[str, Any], airflow_stack: AirflowStack
) -> None:
    """Issue 27, finding 3: the token variables left the task's environment; copies elsewhere show ``***``."""
    assert hygiene_runs["codes"]["hygiene_token_e2e"] == 0
    logs = hygiene_runs["logs"]["hygiene_token_e2e"]
    environment = printed(logs["prints_its_environment"])
    assert "token variables: 0" in environment
    assert 'AIRFLOW_CONN_ONEPASSWORD_DEFAULT={"conn_type": "onepassword"' in environment, "env was printed"
    assert '"password": "***"' in environment, "the connection's copy of the token is masked"
    assert [name for name, log in logs.items() if TOKEN in log] == []
    assert stored_rows(airflow_stack, "hygiene_token_e2e", "xcom", "prints_its_environment") == ['"token variables: 0"']
    (looked_up,) = stored_rows(
        airflow_stack, "hygiene_token_e2e", "xcom", "looks_up_after_the_token_left_the_environment"
    )
    assert json.loads(looked_up) == {"token_variables_in_environment": [], "resolved_characters": len(CANARY)}


# ------------------------------------------------------------------------------------- the sweep
class Sweep:
    """Counts what was searched and where a canary was found."""

    def __init__(self) -> None:
        self.searched: dict[str, int] = {}
        self.found: list[str] = []

    def search(self, kind: str, where: str, text: str) -> None:
        self.searched[kind] = self.searched.get(kind, 0) + 1
        self.found += [f"{kind} {where}: {c}" for c in canaries_in(text)]
        self.found += [f"{kind} {where}: the Connect token"] if TOKEN in text else []


def api_get(client: httpx.Client, sweep: Sweep, path: str) -> Any:
    response = client.get(path, headers={"Accept": "application/json"})
    assert response.status_code == 200, (path, response.status_code, response.text[:300])
    sweep.search("API response", path, response.text)
    return response.json()


@pytest.mark.runs_last
def test_no_canary_anywhere_after_every_dag_has_run(
    airflow_stack: AirflowStack, docker_url: str, slack_standin: SlackStandIn
) -> None:
    """Every example and e2e DAG has run at least once (here, if no other test ran it); then search."""
    sweep = Sweep()
    with httpx.Client(base_url=f"{airflow_stack.api_url}/api/v2", timeout=30) as api:
        dag_ids = [d["dag_id"] for d in api_get(api, sweep, "/dags?limit=100")["dags"]]
        assert {"example_secret_docker", "example_slack_alerts", *HYGIENE_DAGS} <= set(dag_ids)
        for dag_id in dag_ids:
            if not api_get(api, sweep, f"/dags/{dag_id}/dagRuns")["total_entries"]:
                airflow_stack.dags_test(dag_id)
        runs = 0
        never_ran = []
        for dag_id in dag_ids:
            dag_runs = api_get(api, sweep, f"/dags/{dag_id}/dagRuns?limit=100")["dag_runs"]
            never_ran += [] if dag_runs else [dag_id]
            for run in dag_runs:
                runs += 1
                base = f"/dags/{dag_id}/dagRuns/{quote(run['dag_run_id'], safe='')}"
                for ti in api_get(api, sweep, f"{base}/taskInstances?limit=100")["task_instances"]:
                    task = f"{base}/taskInstances/{quote(ti['task_id'], safe='')}"
                    for attempt in range(1, (ti["try_number"] or 0) + 1):
                        api_get(api, sweep, f"{task}/logs/{attempt}?full_content=true")
                    for entry in api_get(api, sweep, f"{task}/xcomEntries")["xcom_entries"]:
                        api_get(api, sweep, f"{task}/xcomEntries/{quote(entry['key'], safe='')}")
    for path in Path(airflow_stack.home, "logs").rglob("*.log"):
        sweep.search(
            "task log" if "dag_id=" in str(path) else "server log", str(path), path.read_text(errors="replace")
        )
    dump = airflow_stack.db_dump()
    sweep.search("metadata DB dump (XCom, rendered fields, all tables)", "airflow.db", dump)
    for message in slack_standin.archive:
        sweep.search("Slack body", message["path"], json.dumps(message["body"]))
    print(f"\ncanary sweep: {len(dag_ids)} DAGs, {runs} runs, {len(CANARIES)} canary values; searched:")
    for kind, count in sorted(sweep.searched.items()):
        print(f"  {count:5d} {kind}")
    assert never_ran == [], "no run to search: airflow dags test did not start these"
    assert sweep.searched.get("Slack body", 0) > 0 and sweep.searched.get("task log", 0) > len(dag_ids)
    assert sweep.found == [], "\n".join(sweep.found[:20])
