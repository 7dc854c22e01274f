# Secrets reach a BashOperator through a second task
from datetime import datetime

from airflow.decorators import task
from airflow.models import DAG
from airflow.operators.bash import BashOperator

from utils.onepassword import load_dict
from utils.slack_operator import task_fail_slack_alert

REQUIRED_SECRETS = {"PGPASSWORD": {"opitem": "Warehouse Postgres", "opfield": "password"}}

with DAG(
    dag_id="atd_bash_two_step",
    default_args={"owner": "airflow", "start_date": datetime(2023, 1, 1), "on_failure_callback": task_fail_slack_alert},
    schedule_interval=None,
    tags=["repo:atd-warehouse"],
) as dag:

    @task
    def get_env_vars():
        return load_dict(REQUIRED_SECRETS)

    @task
    def with_defaults(env):
        return {**env, "PGHOST": "warehouse"}

    env_vars = get_env_vars()
    prepared = with_defaults(env_vars)

    backup = BashOperator(task_id="backup", bash_command="pg_dump > /tmp/dump.sql", env=prepared)
