# Secrets from the team's one-argument load_dict, in a task of the DAG's own
import os
from datetime import datetime, timedelta

from airflow.decorators import task
from airflow.models import DAG
from airflow.providers.docker.operators.docker import DockerOperator

from utils.onepassword import load_dict
from utils.slack_operator import task_fail_slack_alert

DEPLOYMENT_ENVIRONMENT = os.getenv("ENVIRONMENT", "development")

default_args = {
    "owner": "airflow",
    "start_date": datetime(2023, 1, 1),
    "retries": 1,
    "retry_delay": timedelta(minutes=5),
    "on_failure_callback": task_fail_slack_alert,
}

REQUIRED_SECRETS = {
    "SOCRATA_APP_TOKEN": {"opitem": "Socrata Open Data", "opfield": "appToken"},
    # copied from a DAG that ran on the dev stack
    "KNACK_APP_ID": {"opitem": "Knack Data Tracker", "opfield": "prod.appId", "opvault": "DTS Dev"},
}

with DAG(
    dag_id="atd_local_load_dict",
    default_args=default_args,
    schedule_interval="0 6 * * *",
    tags=["repo:atd-knack-services"],
    catchup=False,
) as dag:

    @task(task_id="get_env_vars", execution_timeout=timedelta(seconds=30))
    def get_env_vars():
        return load_dict(REQUIRED_SECRETS)

    env_vars = get_env_vars()

    publish = DockerOperator(
        task_id="publish",
        image=f"atddocker/atd-knack-services:{DEPLOYMENT_ENVIRONMENT}",
        command="./publish.py",
        environment=env_vars,
        force_pull=True,
        auto_remove=True,
    )
