"""Connections and Variables from 1Password through the secrets backend: nothing 1Password-specific here.

With the backend configured (scripts/dev does), ``conn.warehouse`` is the 1Password item titled
``airflow/connections/warehouse`` and ``var.value.socrata_dataset_id`` the item
``airflow/variables/socrata_dataset_id``. Passwords show as ``***`` in logs and rendered fields.
"""

from __future__ import annotations

import pendulum
from airflow.providers.standard.operators.bash import BashOperator
from airflow.sdk import Connection, Variable, dag, task


@dag(
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="America/Chicago"),
    catchup=False,
    tags=["example", "1password", "repo:airflow-dts-provider"],
)
def example_secrets_backend() -> None:
    BashOperator(
        task_id="templates",
        bash_command=(
            'echo "warehouse: {{ conn.warehouse.login }}@{{ conn.warehouse.host }}:{{ conn.warehouse.port }}" && '
            'echo "dataset: {{ var.value.socrata_dataset_id }}" && '
            'echo "password (masked in the log and the Rendered Template view): {{ conn.warehouse.password }}"'
        ),
        do_xcom_push=False,  # BashOperator would store its last output line -- here the password -- in XCom
    )

    @task
    def lookups() -> str:
        warehouse = Connection.get("warehouse")
        api_key = Variable.get("knack_api_key")
        print(f"{warehouse.conn_type}://{warehouse.host}/{warehouse.schema}; knack key is {len(api_key)} chars")
        return warehouse.host or ""  # a host is not a secret; never return passwords (XCom is stored in the DB)

    lookups()


example_secrets_backend()
