"""End-to-end DAG for the 1Password secrets backend (tests/test_secrets_backend_airflow.py).

Every value it reads exists only in 1Password (the dev vault's "Airflow Vault"). Each task writes
sha256 digests of what it got into $DTS_E2E_DIGEST_DIR; the test compares them with the vault.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pendulum
from airflow.providers.standard.hooks.filesystem import FSHook
from airflow.providers.standard.operators.bash import BashOperator
from airflow.sdk import Connection, Variable, dag, task

DIGEST_DIR = "DTS_E2E_DIGEST_DIR"


def write_digest(name: str, value: str) -> None:
    Path(os.environ[DIGEST_DIR], f"{name}.txt").write_text(hashlib.sha256(value.encode()).hexdigest())


@dag(
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1),
    catchup=False,
    # Read at parse time, by the DAG processor (or dags test), through the secrets backend:
    tags=["tests", Variable.get("dag_tag", default="dag-tag-not-found")],
)
def secrets_backend_e2e() -> None:
    BashOperator(
        task_id="render_templates",
        bash_command=(
            'printf %s "{{ conn.canary_conn.password }}" | sha256sum | cut -c1-64 | tr -d "\\n" '
            '> "$DTS_E2E_DIGEST_DIR/template_conn_password.txt" && '
            'printf %s "{{ var.value.canary_var }}" | sha256sum | cut -c1-64 | tr -d "\\n" '
            '> "$DTS_E2E_DIGEST_DIR/template_variable.txt" && '
            'printf %s "{{ conn.pg_fields.host }}:{{ conn.pg_fields.port }}" | sha256sum | cut -c1-64 | tr -d "\\n" '
            '> "$DTS_E2E_DIGEST_DIR/template_conn_host.txt"'
        ),
    )

    @task
    def lookups_in_task() -> str:
        write_digest("task_conn_password", Connection.get("warehouse").password or "")
        write_digest("task_variable", Variable.get("api_key"))
        write_digest("task_json_variable", str(Variable.get("json_settings", deserialize_json=True)["batch"]))
        return "done"  # nothing secret goes to XCom

    @task
    def hook_with_conn_id() -> None:
        write_digest("hook_fs_path", FSHook(fs_conn_id="data_dir").get_path())

    lookups_in_task()
    hook_with_conn_id()


secrets_backend_e2e()
